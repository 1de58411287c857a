"""Softmax cross-entropy with integer labels, mean over the batch.

logits (N,C), labels int64 (N,) -> loss 0-d (logits dtype), probs (N,C); backward probs, labels -> dlogits.
Per row: m = max (NaN wins), s = sum exp(x - m), loss_n = log(s) - (x[label] - m), probs = exp(x - m)/s. The
loss is taken from the shifted logit, never as m + log(s) - x[label]: with a large offset (logits near 1e16)
m + log(s) rounds back to m and the loss would be 0.
Rows run in parallel; the batch mean sums the per-row losses in float64.
Soft targets t (N,C), weights w (N,) or None: loss_n = w_n * sum_c t_c * (log(s) - (x_c - m)),
dlogits = w_n * (sum_c t_c * probs - t) / N.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numba import njit, prange

if TYPE_CHECKING:
    from ..base import Backend
    from . import MakeArray, WarmupCalls


@njit(cache=True)
def _softmax_row(row, out):
    """out = softmax(row); returns (m, s): the row's max (NaN wins) and sum exp(row - m), which the losses
    take their log-sum from."""
    C = row.shape[0]
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
    return m, s


@njit(parallel=True, cache=True)
def _forward(logits, labels, row_loss, probs):
    for n in prange(logits.shape[0]):
        row = logits[n]
        m, s = _softmax_row(row, probs[n])
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


@njit(parallel=True, cache=True)
def _soft_forward(logits, targets, weights, weighted, row_loss, probs):
    N, C = logits.shape
    for n in prange(N):
        row = logits[n]
        t = targets[n]
        m, s = _softmax_row(row, probs[n])
        log_s = math.log(s)
        acc = 0.0
        for j in range(C):
            acc += np.float64(t[j]) * (log_s - (np.float64(row[j]) - np.float64(m)))
        row_loss[n] = acc * weights[n] if weighted else acc


@njit(parallel=True, cache=True)
def _soft_backward(probs, targets, weights, weighted, dlogits):
    N, C = probs.shape
    for n in prange(N):
        t = targets[n]
        total = 0.0
        for j in range(C):
            total += t[j]
        scale = (weights[n] if weighted else 1.0) / N
        for j in range(C):
            dlogits[n, j] = (probs[n, j] * total - t[j]) * scale


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


def softmax_cross_entropy_soft_forward(
    logits: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    N = logits.shape[0]
    row_loss = np.empty(N, np.float64)
    probs = np.empty_like(logits)
    w = np.empty(N, logits.dtype) if weights is None else weights  # not read when unweighted
    _soft_forward(logits, targets, w, weights is not None, row_loss, probs)
    return np.array(row_loss.sum() / N, dtype=logits.dtype), probs


def softmax_cross_entropy_soft_backward(
    probs: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    dlogits = np.empty_like(probs)
    w = np.empty(probs.shape[0], probs.dtype) if weights is None else weights  # not read when unweighted
    _soft_backward(probs, targets, w, weights is not None, dlogits)
    return dlogits


def warmup_calls(be: Backend, rand: MakeArray, zeros: MakeArray) -> WarmupCalls:
    """{kernel: closure} calling each kernel of this file once on tiny inputs that reach every compiled
    loop (the package's warmup(); ``rand(*shape)``/``zeros(*shape)`` make arrays of the dtype warmed)."""
    logits, labels = rand(3, 4), np.array([0, 3, 1], np.int64)
    saved: dict[str, np.ndarray] = {}

    def forward() -> None:
        saved["probs"] = be.softmax_cross_entropy_forward(logits, labels)[1]

    targets, weights = rand(3, 4), rand(3)

    def soft() -> None:
        probs = be.softmax_cross_entropy_soft_forward(logits, targets, weights)[1]
        be.softmax_cross_entropy_soft_backward(probs, targets, None)

    return {
        "softmax_cross_entropy_soft_forward": soft,
        "softmax_cross_entropy_soft_backward": soft,
        "softmax_cross_entropy_forward": forward,
        "softmax_cross_entropy_backward": lambda: be.softmax_cross_entropy_backward(saved["probs"], labels),
    }
