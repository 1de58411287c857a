"""Softmax cross-entropy at the front door: logits (N,C), labels int (N,); or soft targets (N,C) with optional
per-sample weights (N,).

An empty batch (N = 0) follows PyTorch's cross_entropy: the mean over no rows is NaN (0/0), probs and the
gradient are empty (0, C); no kernel is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


def _soft(
    be: Any, first: str, a: BackendArray, targets: BackendArray, weights: BackendArray | None
) -> tuple[BackendArray, BackendArray, BackendArray | None]:
    a = check.array(first, a, be, ndim=2, batch=True)
    targets = check.array("targets", targets, be, dtype=a.dtype)
    check.shape_is("targets", targets, a.shape, f"the shape of {first}")
    if weights is not None:
        weights = check.array("weights", weights, be, dtype=a.dtype)
        check.shape_is("weights", weights, a.shape[:1], f"({first}.shape[0],)")
    return a, targets, weights


def softmax_cross_entropy_soft_forward(
    logits: BackendArray,
    targets: BackendArray,
    weights: BackendArray | None = None,
    *,
    backend: BackendLike = None,
) -> tuple[BackendArray, BackendArray]:
    """Returns (loss, probs) against soft targets (N,C) (one-hot or smoothed labels, any non-negative
    weights per class): loss = Σ_n w_n·(−Σ_c t_nc·log_softmax(logits)_nc) / N, Keras's weighted mean over
    the batch size (torch's cross_entropy with probability targets when weights is None)."""
    be = resolve(backend)
    logits, targets, weights = _soft(be, "logits", logits, targets, weights)
    if logits.shape[0] == 0:
        xp = __import__(be.array_module)
        return xp.full((), xp.nan, logits.dtype), xp.empty(logits.shape, logits.dtype)
    return be.softmax_cross_entropy_soft_forward(logits, targets, weights)


def softmax_cross_entropy_soft_backward(
    probs: BackendArray,
    targets: BackendArray,
    weights: BackendArray | None = None,
    *,
    backend: BackendLike = None,
) -> BackendArray:
    """d(loss)/d logits = w_n·(Σ_c t_nc·probs_n − targets_n) / N (probs − targets when the targets sum to
    1)."""
    be = resolve(backend)
    probs, targets, weights = _soft(be, "probs", probs, targets, weights)
    if probs.shape[0] == 0:
        return __import__(be.array_module).empty(probs.shape, probs.dtype)
    return be.softmax_cross_entropy_soft_backward(probs, targets, weights)
