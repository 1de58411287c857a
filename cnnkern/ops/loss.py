"""Softmax cross-entropy at the front door: logits (N,C), labels int (N,).

An empty batch (N = 0) follows PyTorch's cross_entropy: the mean over no rows is NaN (0/0), probs and the
gradient are empty (0, C); no kernel is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backends import resolve
from . import check

if TYPE_CHECKING:
    from .._typing import BackendArray
    from .check import BackendLike


def softmax_cross_entropy_forward(
    logits: BackendArray, labels: BackendArray, *, backend: BackendLike = None
) -> tuple[BackendArray, BackendArray]:
    """Returns (loss, probs): the mean cross-entropy (0-d array) and softmax(logits) (N,C), computed stably
    through log_softmax = x - max - log Σ exp(x - max)."""
    be = resolve(backend)
    logits = check.array("logits", logits, be, ndim=2, batch=True)
    labels = check.labels("labels", labels, be, logits.shape[0], logits.shape[1])
    if logits.shape[0] == 0:
        xp = __import__(be.array_module)
        return xp.full((), xp.nan, logits.dtype), xp.empty(logits.shape, logits.dtype)
    return be.softmax_cross_entropy_forward(logits, labels)


def softmax_cross_entropy_backward(
    probs: BackendArray, labels: BackendArray, *, backend: BackendLike = None
) -> BackendArray:
    """d(mean loss)/d logits = (probs - onehot(labels)) / N."""
    be = resolve(backend)
    probs = check.array("probs", probs, be, ndim=2, batch=True)
    labels = check.labels("labels", labels, be, probs.shape[0], probs.shape[1])
    if probs.shape[0] == 0:
        return __import__(be.array_module).empty(probs.shape, probs.dtype)
    return be.softmax_cross_entropy_backward(probs, labels)
