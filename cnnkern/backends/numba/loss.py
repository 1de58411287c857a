"""Softmax cross-entropy with integer labels, mean over the batch.

logits (N,C), labels int64 (N,) -> loss 0-d (logits dtype), probs (N,C); backward probs, labels -> dlogits.
Per row: m = max (NaN wins), s = sum exp(x - m), loss_n = log(s) - (x[label] - m), probs = exp(x - m)/s. The
loss is taken from the shifted logit, never as m + log(s) - x[label]: with a large offset (logits near 1e16)
m + log(s) rounds back to m and the loss would be 0.
Rows run in parallel; the batch mean sums the per-row losses in float64.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numba import njit, prange

if TYPE_CHECKING:
    from ..base import Backend
    from . import MakeArray, WarmupCalls


@njit(parallel=True, cache=True)
def _forward(logits, labels, row_loss, probs):
    N, C = logits.shape
    for n in prange(N):
        row = logits[n]
        out = probs[n]
        m = row[0]
        for j in range(1, C):
            v = row[j]
            if v > m or math.isnan(v):
                m = v
        s = 0.0
        for j in range(C):
            e = math.exp(row[j] - m)
            out[j] = e
            s += e
        for j in range(C):
            out[j] = out[j] / s
        row_loss[n] = math.log(s) - (np.float64(row[labels[n]]) - np.float64(m))


@njit(parallel=True, cache=True)
def _backward(probs, labels, dlogits):
    """dlogits = (probs - onehot(labels)) / N."""
    N, C = probs.shape
    for n in prange(N):
        src = probs[n]
        dst = dlogits[n]
        for j in range(C):
            dst[j] = src[j] / N
        dst[labels[n]] = (src[labels[n]] - 1) / N


def softmax_cross_entropy_forward(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    N = logits.shape[0]
    row_loss = np.empty(N, np.float64)
    probs = np.empty_like(logits)
    _forward(logits, labels, row_loss, probs)
    return np.array(row_loss.sum() / N, dtype=logits.dtype), probs


def softmax_cross_entropy_backward(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    dlogits = np.empty_like(probs)
    _backward(probs, labels, dlogits)
    return dlogits


def warmup_calls(be: Backend, rand: MakeArray, zeros: MakeArray) -> WarmupCalls:
    """{kernel: closure} calling each kernel of this file once on tiny inputs that reach every compiled
    loop (the package's warmup(); ``rand(*shape)``/``zeros(*shape)`` make arrays of the dtype warmed)."""
    logits, labels = rand(3, 4), np.array([0, 3, 1], np.int64)
    saved: dict[str, np.ndarray] = {}

    def forward() -> None:
        saved["probs"] = be.softmax_cross_entropy_forward(logits, labels)[1]

    return {
        "softmax_cross_entropy_forward": forward,
        "softmax_cross_entropy_backward": lambda: be.softmax_cross_entropy_backward(saved["probs"], labels),
    }
