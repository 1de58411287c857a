"""Reference batch norm over (N, H, W) per channel: x (N,C,H,W), gamma/beta/running stats (C,)."""

from __future__ import annotations

import numpy as np


def batchnorm2d_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    *,
    training: bool,
    momentum: float,
    eps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training: two-pass biased variance, invstd = 1/sqrt(var + eps); running stats updated in place as
    (1-m)·old + m·new with the unbiased variance. Eval: the running statistics."""
    if training:
        n = x.shape[0] * x.shape[2] * x.shape[3]
        mean = x.mean(axis=(0, 2, 3))
        var = ((x - mean[None, :, None, None]) ** 2).sum(axis=(0, 2, 3)) / n
        invstd = 1.0 / np.sqrt(var + eps)
        running_mean *= 1.0 - momentum
        running_mean += momentum * mean
        running_var *= 1.0 - momentum
        running_var += momentum * var * (n / (n - 1))
    else:
        mean = running_mean.copy()
        invstd = 1.0 / np.sqrt(running_var + eps)
    mean = mean.astype(x.dtype)
    invstd = invstd.astype(x.dtype)
    xhat = (x - mean[None, :, None, None]) * invstd[None, :, None, None]
    return xhat * gamma[None, :, None, None] + beta[None, :, None, None], mean, invstd


def batchnorm2d_backward(
    dy: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray, invstd: np.ndarray, *, training: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx = γ·invstd/n·(n·dy − Σdy − x̂·Σ(dy·x̂)) in training; γ·invstd·dy in eval (constant statistics)."""
    c4 = (None, slice(None), None, None)
    xhat = (x - mean[c4]) * invstd[c4]
    dbeta = dy.sum(axis=(0, 2, 3))
    dgamma = (dy * xhat).sum(axis=(0, 2, 3))
    if training:
        n = x.shape[0] * x.shape[2] * x.shape[3]
        dx = (gamma * invstd / n)[c4] * (n * dy - dbeta[c4] - xhat * dgamma[c4])
    else:
        dx = (gamma * invstd)[c4] * dy
    return dx, dgamma, dbeta
