"""Reference softmax cross-entropy: logits (N,C), labels int64 (N,) -> mean loss, probs (N,C); and against
soft targets (N,C) with optional per-sample weights (N,)."""

from __future__ import annotations

import numpy as np


def softmax_cross_entropy_forward(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log_softmax = x − max − log Σ exp(x − max); loss = −mean(log_softmax[n, label_n])."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    logsum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - logsum
    n = logits.shape[0]
    loss = -log_probs[np.arange(n), labels].sum() / n
    return np.asarray(loss, dtype=logits.dtype), np.exp(log_probs)


def softmax_cross_entropy_backward(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    n = probs.shape[0]
    d = probs.copy()
    d[np.arange(n), labels] -= 1
    d /= n
    return d


def softmax_cross_entropy_soft_forward(
    logits: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """loss = Σ_n w_n·(−Σ_c t_nc·log_softmax_nc) / N (Keras's sum over the batch size)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = -(targets * log_probs).sum(axis=1)
    if weights is not None:
        rows = rows * weights
    loss = rows.sum() / logits.shape[0]
    return np.asarray(loss, dtype=logits.dtype), np.exp(log_probs)


def softmax_cross_entropy_soft_backward(
    probs: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    d = probs * targets.sum(axis=1, keepdims=True) - targets
    if weights is not None:
        d *= weights[:, None]
    d /= probs.shape[0]
    return d
