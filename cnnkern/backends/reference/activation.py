"""Reference activations (elementwise); backward from the output y, as PyTorch does (ELU's from the input x,
as PyTorch's F.elu does)."""

from __future__ import annotations

import numpy as np


def activation_forward(x: np.ndarray, kind: str, *, alpha: float) -> np.ndarray:
    if kind == "relu":
        return np.where(x > 0, x, np.where(np.isnan(x), x, 0)).astype(x.dtype)
    if kind == "leaky_relu":
        return np.where(x > 0, x, x * x.dtype.type(alpha)).astype(x.dtype)
    if kind == "sigmoid":
        # 1/(1+e^-x) for x >= 0, e^x/(1+e^x) below: neither form overflows
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)
    if kind == "tanh":
        return np.tanh(x)
    raise ValueError(f"unknown activation kind {kind!r}")


def activation_backward(dy: np.ndarray, y: np.ndarray, kind: str, *, alpha: float) -> np.ndarray:
    if kind == "relu":
        # PyTorch's threshold_backward: y <= 0 ? 0 : dy, so a NaN output passes dy through
        return np.where(y <= 0, 0, dy).astype(dy.dtype)
    if kind == "leaky_relu":
        return np.where(y > 0, dy, dy * dy.dtype.type(alpha)).astype(dy.dtype)
    if kind == "sigmoid":
        return dy * y * (1 - y)
    if kind == "tanh":
        return dy * (1 - y * y)
    raise ValueError(f"unknown activation kind {kind!r}")


def elu_forward(x: np.ndarray, *, alpha: float) -> np.ndarray:
    # PyTorch's (vectorised) x > 0 ? x : alpha * expm1(x), so NaN stays NaN; expm1 keeps the accuracy near 0
    return np.where(x > 0, x, x.dtype.type(alpha) * np.expm1(np.minimum(x, 0))).astype(x.dtype)


def elu_backward(dy: np.ndarray, x: np.ndarray, *, alpha: float) -> np.ndarray:
    # PyTorch's (vectorised) elu_backward from the input: x > 0 ? dy : dy * alpha * e^x, so a NaN x gives
    # NaN; an infinite dy where e^x is 0 gives NaN too, as in IEEE arithmetic
    with np.errstate(invalid="ignore"):
        return np.where(x > 0, dy, dy * dy.dtype.type(alpha) * np.exp(np.minimum(x, 0))).astype(dy.dtype)
