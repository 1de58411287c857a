"""Batch normalisation over (N, H, W) per channel, forward (training / eval) and backward.

x (N,C,H,W), gamma/beta/running_mean/running_var (C,) -> y (N,C,H,W), mean (C,), invstd (C,).
One parallel task per channel; inside it the loops run over n, then the contiguous H*W plane. Per-channel
sums accumulate in float64; the statistics are rounded to the array dtype once, then used as rounded, so
that backward gets exactly the mean/invstd that forward applied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit, prange

if TYPE_CHECKING:
    from ..base import Backend
    from . import MakeArray, WarmupCalls


@njit(parallel=True, cache=True)
def _batch_stats(x3, mean, var):
    """Two-pass statistics of x3 (N, C, HW): mean = sum/n, biased var = sum((x - mean)^2)/n (float64)."""
    N, C, HW = x3.shape
    count = N * HW
    for c in prange(C):
        s = 0.0
        for n in range(N):
            row = x3[n, c]
            for i in range(HW):
                s += row[i]
        m = s / count
        ss = 0.0
        for n in range(N):
            row = x3[n, c]
            for i in range(HW):
                d = row[i] - m
                ss += d * d
        mean[c] = m
        var[c] = ss / count


@njit(parallel=True, cache=True)
def _normalize(x3, gamma, beta, mean, invstd, y3):
    """y = (x - mean) * invstd * gamma + beta, per channel."""
    N, C, HW = x3.shape
    for t in prange(N * C):
        n = t // C
        c = t % C
        m = mean[c]
        scale = invstd[c] * gamma[c]
        shift = beta[c]
        src = x3[n, c]
        dst = y3[n, c]
        for i in range(HW):
            dst[i] = (src[i] - m) * scale + shift


@njit(parallel=True, cache=True)
def _backward(dy3, x3, gamma, mean, invstd, training, dx3, dgamma, dbeta):
    """With xhat = (x - mean) * invstd: dbeta = sum dy, dgamma = sum dy * xhat (float64 sums);
    training: dx = gamma * invstd / n * (n dy - sum dy - xhat * sum(dy xhat));
    eval (statistics are constants): dx = dy * gamma * invstd."""
    N, C, HW = x3.shape
    count = N * HW
    for c in prange(C):
        m = mean[c]
        inv = invstd[c]
        sdy = 0.0
        sdyx = 0.0
        for n in range(N):
            g = dy3[n, c]
            src = x3[n, c]
            for i in range(HW):
                sdy += g[i]
                sdyx += g[i] * ((src[i] - m) * inv)
        dbeta[c] = sdy
        dgamma[c] = sdyx
        scale = gamma[c] * inv
        if training:
            k = scale / count
            for n in range(N):
                g = dy3[n, c]
                src = x3[n, c]
                dst = dx3[n, c]
                for i in range(HW):
                    xhat = (src[i] - m) * inv
                    dst[i] = k * (count * g[i] - sdy - xhat * sdyx)
        else:
            for n in range(N):
                g = dy3[n, c]
                dst = dx3[n, c]
                for i in range(HW):
                    dst[i] = g[i] * scale


def batchnorm2d_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    training: bool,
    momentum: float,
    eps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    N, C, H, W = x.shape
    x3 = x.reshape(N, C, H * W)
    if training:
        mean64 = np.empty(C, np.float64)
        var64 = np.empty(C, np.float64)
        _batch_stats(x3, mean64, var64)
        count = N * H * W
        m = float(momentum)
        running_mean[...] = (1.0 - m) * running_mean + m * mean64
        running_var[...] = (1.0 - m) * running_var + m * (var64 * (count / (count - 1)))
        mean = mean64.astype(x.dtype)
        invstd = (1.0 / np.sqrt(var64 + float(eps))).astype(x.dtype)
    else:
        mean = running_mean.astype(x.dtype, copy=True)
        invstd = (1.0 / np.sqrt(running_var.astype(np.float64) + float(eps))).astype(x.dtype)
    y = np.empty_like(x)
    _normalize(x3, gamma, beta, mean, invstd, y.reshape(N, C, H * W))
    return y, mean, invstd


def batchnorm2d_backward(
    dy: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray, invstd: np.ndarray, training: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    N, C, H, W = x.shape
    dx = np.empty_like(x)
    dgamma = np.empty(C, x.dtype)
    dbeta = np.empty(C, x.dtype)
    _backward(
        dy.reshape(N, C, H * W), x.reshape(N, C, H * W), gamma, mean, invstd, bool(training),
        dx.reshape(N, C, H * W), dgamma, dbeta,
    )  # fmt: skip
    return dx, dgamma, dbeta


def warmup_calls(be: Backend, rand: MakeArray, zeros: MakeArray) -> WarmupCalls:
    """{kernel: closure} calling each kernel of this file once on tiny inputs that reach every compiled
    loop (the package's warmup(); ``rand(*shape)``/``zeros(*shape)`` make arrays of the dtype warmed)."""
    x, gamma, beta, mean, var = rand(2, 2, 4, 4), rand(2), rand(2), rand(2), np.abs(rand(2)) + 1
    stats: dict[str, Any] = dict(momentum=0.1, eps=1e-5)
    saved: dict[str, Any] = {}

    def forward() -> None:
        saved["bn"] = be.batchnorm2d_forward(x, gamma, beta, mean, var, training=True, **stats)
        be.batchnorm2d_forward(x, gamma, beta, mean, var, training=False, **stats)

    def backward() -> None:
        _, m, invstd = saved["bn"]
        be.batchnorm2d_backward(x, x, gamma, m, invstd, training=True)
        be.batchnorm2d_backward(x, x, gamma, m, invstd, training=False)

    return {"batchnorm2d_forward": forward, "batchnorm2d_backward": backward}
