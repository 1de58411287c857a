"""Fully connected layer on the packed GEMM of gemm.py.

x (N,in), w (out,in), b (out,) | None -> y (N,out)
  forward  y  (N, out)  = x (N, in) @ w^T (in, out) + b
  dx       (N, in)      = dy (N, out) @ w (out, in)
  dw       (out, in)    = dy^T (out, N) @ x (N, in)
  db       (out,)       = column sums of dy, float64 accumulation
The transposes are views: the GEMM packs its operands from any layout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numba import njit, prange

from .gemm import gemm

if TYPE_CHECKING:
    from ..base import Backend
    from . import MakeArray, WarmupCalls


@njit(parallel=True, cache=True)
def _column_sums(dy, db):
    """db[o] = sum_n dy[n, o]; tasks over blocks of 64 columns, rows scanned contiguously within a block."""
    N, O = dy.shape
    nblk = (O + 63) // 64
    for t in prange(nblk):
        o0 = t * 64
        o1 = min(o0 + 64, O)
        acc = np.zeros(o1 - o0, np.float64)
        for n in range(N):
            row = dy[n]
            for o in range(o0, o1):
                acc[o - o0] += row[o]
        for o in range(o0, o1):
            db[o] = acc[o - o0]


def dense_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    y = np.empty((x.shape[0], w.shape[0]), x.dtype)
    bias = b if b is not None else np.empty(0, x.dtype)
    gemm(x, w.T, bias, b is not None, y)
    return y


def dense_backward(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, need_dx: bool, need_db: bool
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    empty = np.empty(0, dy.dtype)
    dx = None
    if need_dx:
        dx = np.empty_like(x)
        gemm(dy, w, empty, False, dx)
    dw = np.empty_like(w)
    gemm(dy.T, x, empty, False, dw)
    db = None
    if need_db:
        db = np.empty(w.shape[0], dy.dtype)
        _column_sums(dy, db)
    return dx, dw, db


def warmup_calls(be: Backend, rand: MakeArray, zeros: MakeArray) -> WarmupCalls:
    """{kernel: closure} calling each kernel of this file once on tiny inputs that reach every compiled
    loop (the package's warmup(); ``rand(*shape)``/``zeros(*shape)`` make arrays of the dtype warmed)."""
    x, w, b, dy = rand(3, 4), rand(2, 4), rand(2), rand(3, 2)
    return {
        "dense_forward": lambda: be.dense_forward(x, w, b),
        "dense_backward": lambda: be.dense_backward(dy, x, w, need_dx=True, need_db=True),
    }
