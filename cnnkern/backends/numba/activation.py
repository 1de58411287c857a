"""Elementwise activations over the flat array; backward from the output y, as PyTorch does.

x (any shape) -> y (same shape); dy, y -> dx. Kinds: relu, leaky_relu (slope alpha for x <= 0), sigmoid,
tanh. NaN propagates: relu(NaN) = NaN, and backward passes dy where y is NaN (PyTorch's `y <= 0 ? 0 : dy`).
Each kind has its own branch-free parallel loop so LLVM can vectorise it. For float32, sigmoid and tanh are
computed in float64 arithmetic without library calls (sigmoid32, tanh32: Numba's math.exp / math.tanh are
scalar calls that do not vectorise, measured 5x slower than the C++ backend's tanh on lenet5's first layer)
and rounded to float32 once; float64 keeps math.exp / math.tanh. ELU (elu_forward / elu_backward,
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
# 1/k! for k = 14 .. 0: exp's Taylor polynomial, in Horner's order
_EXP_COEFFS = tuple(1.0 / math.factorial(k) for k in range(14, -1, -1))


@njit(cache=True)
def _exp_neg(a):
    """exp(-a) in float64 for 0 <= a <= 110, by multiplies alone (so a loop over it vectorises): the Taylor
    polynomial of degree 14 at r = -a/256 (|r| < 0.43: truncation below 1e-17), squared 8 times (relative
    error about 256 float64 ulps, some 1e-13: far below float32's half ulp)."""
    r = a * (-1.0 / 256)
    p = 0.0
    for c in _EXP_COEFFS:
        p = p * r + c
    for _ in range(8):
        p = p * p
    return p


# error_model="numpy": IEEE division (the divisors are >= 1) without Python's zero-divisor test, a branch
# that stops LLVM from vectorising the loops (measured 10x)
@njit(cache=True, error_model="numpy")
def sigmoid32(v):
    """sigmoid of a float32 value, in float64 (the caller rounds once): 1/(1+e) or e/(1+e) with e = exp(-|v|),
    which cannot overflow; exp(-110) is below float32's smallest subnormal. NaN stays NaN."""
    x = np.float64(v)
    a = abs(x)
    e = _exp_neg(a if a < 110.0 else 110.0)
    s = 1.0 / (1.0 + e)
    r = s if x >= 0 else e * s
    return r if x == x else x


@njit(cache=True, error_model="numpy")
def tanh32(v):
    """tanh of a float32 value, in float64 (the caller rounds once): sign(v) (1-e)/(1+e) with e = exp(-2|v|)
    (|v| >= 9.1: e < 1.3e-8, which rounds to +-1 in float32 as tanh does), x - x^3/3 + 2x^5/15 below 1e-3
    where 1-e would cancel. NaN stays NaN, -0 stays -0."""
    x = np.float64(v)
    a = abs(x)
    e = _exp_neg(2.0 * (a if a < 9.1 else 9.1))
    t = (1.0 - e) / (1.0 + e)
    x2 = x * x
    small = x * (1.0 - x2 * (1.0 / 3 - x2 * (2.0 / 15)))
    r = small if a < 1e-3 else (t if x > 0 else -t)
    return r if x == x else x


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
        if y.itemsize == 4:
            for i in prange(n):
                y[i] = sigmoid32(x[i])
        else:
            for i in prange(n):
                y[i] = 1 / (1 + math.exp(-x[i]))
    elif y.itemsize == 4:
        for i in prange(n):
            y[i] = tanh32(x[i])
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
