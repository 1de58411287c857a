"""Reference activations (elementwise); backward from the output y, as PyTorch does."""

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
