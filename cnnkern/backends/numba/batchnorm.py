"""Batch normalisation over (N, H, W) per channel, forward (training / eval) and backward.

x (N,C,H,W), gamma/beta/running_mean/running_var (C,) -> y (N,C,H,W), mean (C,), invstd (C,).
One parallel task per channel; inside it the loops run over n, then the contiguous H*W plane. Per-channel
sums accumulate in float64, each plane's in eight independent lanes (elements i = 8j + l, the last HW % 8
apart) combined in a fixed order, so that the loops vectorise (a single running sum cannot without
fastmath) and the order depends on the shape alone, never on the thread count; the statistics are rounded
to the array dtype once, then used as rounded, so that backward gets exactly the mean/invstd that forward
applied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit, prange

if TYPE_CHECKING:
    from ..base import Backend
    from . import MakeArray, WarmupCalls


@njit(cache=True)
def _plane_sum(row, m, square):
    """sum of row[i] - m (square: of its square) in float64, in eight lanes (module docstring)."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    end = row.size - row.size % 8
    for i in range(0, end, 8):
        d0, d1 = np.float64(row[i]) - m, np.float64(row[i + 1]) - m
        d2, d3 = np.float64(row[i + 2]) - m, np.float64(row[i + 3]) - m
        d4, d5 = np.float64(row[i + 4]) - m, np.float64(row[i + 5]) - m
        d6, d7 = np.float64(row[i + 6]) - m, np.float64(row[i + 7]) - m
        if square:
            d0, d1, d2, d3, d4, d5, d6, d7 = (
                d0 * d0,
                d1 * d1,
                d2 * d2,
                d3 * d3,
                d4 * d4,
                d5 * d5,
                d6 * d6,
                d7 * d7,
            )
        s0 += d0
        s1 += d1
        s2 += d2
        s3 += d3
        s4 += d4
        s5 += d5
        s6 += d6
        s7 += d7
    t = 0.0
    for i in range(end, row.size):
        d = np.float64(row[i]) - m
        t += d * d if square else d
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)) + t


@njit(cache=True)
def _plane_dots(g, src, m, inv):
    """(sum g, sum g * xhat) over one plane, xhat = (src - m) * inv as in the array dtype, in float64
    lanes (module docstring)."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = 0.0
    end = g.size - g.size % 8
    for i in range(0, end, 8):
        a0 += g[i]
        a1 += g[i + 1]
        a2 += g[i + 2]
        a3 += g[i + 3]
        a4 += g[i + 4]
        a5 += g[i + 5]
        a6 += g[i + 6]
        a7 += g[i + 7]
        b0 += g[i] * ((src[i] - m) * inv)
        b1 += g[i + 1] * ((src[i + 1] - m) * inv)
        b2 += g[i + 2] * ((src[i + 2] - m) * inv)
        b3 += g[i + 3] * ((src[i + 3] - m) * inv)
        b4 += g[i + 4] * ((src[i + 4] - m) * inv)
        b5 += g[i + 5] * ((src[i + 5] - m) * inv)
        b6 += g[i + 6] * ((src[i + 6] - m) * inv)
        b7 += g[i + 7] * ((src[i + 7] - m) * inv)
    ta = tb = 0.0
    for i in range(end, g.size):
        ta += g[i]
        tb += g[i] * ((src[i] - m) * inv)
    sa = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ta
    sb = ((b0 + b1) + (b2 + b3)) + ((b4 + b5) + (b6 + b7)) + tb
    return sa, sb


@njit(parallel=True, cache=True)
def _batch_stats(x3, mean, var):
    """Two-pass statistics of x3 (N, C, HW): mean = sum/n, biased var = sum((x - mean)^2)/n (float64)."""
    N, C, HW = x3.shape
    count = N * HW
    for c in prange(C):
        s = 0.0
        for n in range(N):
            s += _plane_sum(x3[n, c], 0.0, False)
        m = s / count
        ss = 0.0
        for n in range(N):
            ss += _plane_sum(x3[n, c], m, True)
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
            a, b = _plane_dots(dy3[n, c], x3[n, c], m, inv)
            sdy += a
            sdyx += b
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
