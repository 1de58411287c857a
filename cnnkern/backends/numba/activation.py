"""Elementwise activations over the flat array; backward from the output y, as PyTorch does.

x (any shape) -> y (same shape); dy, y -> dx. Kinds: relu, leaky_relu (slope alpha for x <= 0), sigmoid,
tanh. NaN propagates: relu(NaN) = NaN, and backward passes dy where y is NaN (PyTorch's `y <= 0 ? 0 : dy`).
Each kind has its own branch-free parallel loop so LLVM can vectorise it. ELU (elu_forward / elu_backward,
the latter from the input x) has its own pair of loops.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numba import njit, prange

from ..base import ACTIVATIONS
from . import alloc

if TYPE_CHECKING:
    from ..base import Backend
    from . import MakeArray, WarmupCalls

KIND_CODES = {kind: code for code, kind in enumerate(ACTIVATIONS)}  # relu 0, leaky_relu 1, sigmoid 2, tanh 3


@njit(parallel=True, cache=True)
def _forward(x, kind, alpha, y):
    n = x.size
    if kind == 0:
        for i in prange(n):
            v = x[i]
            y[i] = 0 if v < 0 else v
    elif kind == 1:
        for i in prange(n):
            v = x[i]
            y[i] = v if v > 0 else v * alpha
    elif kind == 2:
        for i in prange(n):
            y[i] = 1 / (1 + math.exp(-x[i]))
    else:
        for i in prange(n):
            y[i] = math.tanh(x[i])


@njit(parallel=True, cache=True)
def _backward(dy, y, kind, alpha, dx):
    n = y.size
    if kind == 0:
        for i in prange(n):
            dx[i] = 0 if y[i] <= 0 else dy[i]
    elif kind == 1:
        for i in prange(n):
            dx[i] = dy[i] if y[i] > 0 else dy[i] * alpha
    elif kind == 2:
        for i in prange(n):
            dx[i] = dy[i] * (1 - y[i]) * y[i]
    else:
        for i in prange(n):
            dx[i] = dy[i] * (1 - y[i] * y[i])


def activation_forward(x: np.ndarray, kind: str, alpha: float) -> np.ndarray:
    y = alloc.empty(x.shape, x.dtype)
    _forward(x.reshape(-1), KIND_CODES[kind], x.dtype.type(alpha), y.reshape(-1))
    return y


def activation_backward(dy: np.ndarray, y: np.ndarray, kind: str, alpha: float) -> np.ndarray:
    dx = alloc.empty(y.shape, y.dtype)
    _backward(dy.reshape(-1), y.reshape(-1), KIND_CODES[kind], y.dtype.type(alpha), dx.reshape(-1))
    return dx


@njit(parallel=True, cache=True)
def _elu_forward(x, alpha, y):
    for i in prange(x.size):
        v = x[i]
        y[i] = v if v > 0 else alpha * math.expm1(v)


@njit(parallel=True, cache=True)
def _elu_backward(dy, x, alpha, dx):
    for i in prange(x.size):
        v = x[i]
        dx[i] = dy[i] if v > 0 else dy[i] * alpha * math.exp(v)


def elu_forward(x: np.ndarray, alpha: float) -> np.ndarray:
    y = alloc.empty(x.shape, x.dtype)
    _elu_forward(x.reshape(-1), x.dtype.type(alpha), y.reshape(-1))
    return y


def elu_backward(dy: np.ndarray, x: np.ndarray, alpha: float) -> np.ndarray:
    dx = alloc.empty(x.shape, x.dtype)
    _elu_backward(dy.reshape(-1), x.reshape(-1), x.dtype.type(alpha), dx.reshape(-1))
    return dx


def warmup_calls(be: Backend, rand: MakeArray, zeros: MakeArray) -> WarmupCalls:
    """{kernel: closure} calling each kernel of this file once on tiny inputs that reach every compiled
    loop (the package's warmup(); ``rand(*shape)``/``zeros(*shape)`` make arrays of the dtype warmed)."""
    x = rand(2, 2, 4, 4)
    return {
        "activation_forward": lambda: be.activation_forward(x, "relu", alpha=0.01),
        "activation_backward": lambda: be.activation_backward(x, x, "relu", alpha=0.01),
    }
