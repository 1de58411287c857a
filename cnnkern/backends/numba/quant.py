"""The numba backend's int8 kernels (:mod:`cnnkern.compress`): the table's signatures
(:mod:`cnnkern.kernels.quant`), results equal to the reference's (:mod:`cnnkern.backends.reference.quant`),
as direct loops in int64 (one parallel task per output row of an image, or per sample). Channels-last
images. The front door (:class:`cnnkern.compress.kernels.QuantKernels`) has checked the arguments."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit, prange

from ..reference import quant as spec


@njit(cache=True)
def _requant(acc, m, s, y_zero, lo):
    v = y_zero + ((acc * m + (np.int64(1) << (s - 1))) >> s)
    return np.uint8(min(max(v, lo), 127))


@njit(parallel=True, cache=True)
def _conv(x, w, bias, mult, shift, x_zero, y_zero, lo, sh, sw, pt, pl, dh, dw, groups, P, Q, y):
    N, H, W, C = x.shape
    K, R, S, CG = w.shape  # (K, R, S, C/groups): a tap's channels contiguous, as x's
    KG = K // groups
    for task in prange(N * P):
        n, p = task // P, task % P
        for q in range(Q):
            for k in range(K):
                c0 = (k // KG) * CG
                acc = np.int64(bias[k])
                for i in range(R):
                    hh = p * sh - pt + i * dh
                    if hh < 0 or hh >= H:
                        continue
                    for j in range(S):
                        ww = q * sw - pl + j * dw
                        if ww < 0 or ww >= W:
                            continue
                        for c in range(CG):
                            acc += (np.int64(x[n, hh, ww, c0 + c]) - x_zero) * w[k, i, j, c]
                y[n, p, q, k] = _requant(acc, np.int64(mult[k]), np.int64(shift[k]), y_zero, lo)


@njit(parallel=True, cache=True)
def _dense(x, w, bias, mult, shift, x_zero, y_zero, lo, y, acc_out, requantize):
    N, IN = x.shape
    OUT = w.shape[0]
    for n in prange(N):
        for k in range(OUT):
            acc = np.int64(bias[k])
            for t in range(IN):
                acc += (np.int64(x[n, t]) - x_zero) * w[k, t]
            if requantize:
                y[n, k] = _requant(acc, np.int64(mult[k]), np.int64(shift[k]), y_zero, lo)
            else:
                acc_out[n, k] = acc


@njit(parallel=True, cache=True)
def _maxpool(x, kh, kw, sh, sw, ph, pw, y):
    N, H, W, C = x.shape
    _, P, Q, _ = y.shape
    for task in prange(N * P):
        n, p = task // P, task % P
        for q in range(Q):
            for c in range(C):
                best = np.uint8(0)  # below every code, as the specification's padding
                for i in range(kh):
                    hh = p * sh - ph + i
                    if hh < 0 or hh >= H:
                        continue
                    for j in range(kw):
                        ww = q * sw - pw + j
                        if 0 <= ww < W and x[n, hh, ww, c] > best:
                            best = x[n, hh, ww, c]
                y[n, p, q, c] = best


def conv2d_q8_forward(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    multiplier: np.ndarray,
    shift: np.ndarray,
    *,
    x_zero: int,
    y_zero: int,
    relu: bool,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    y = np.empty(spec.conv_q8_shape(x, w, stride, padding, dilation), np.uint8)
    w_rsc = np.ascontiguousarray(w.transpose(0, 2, 3, 1))
    low = y_zero if relu else 0
    geometry = (*stride, padding[0], padding[2], *dilation, groups, *y.shape[1:3])
    _conv(x, w_rsc, bias, multiplier, shift, x_zero, y_zero, low, *geometry, y)
    return y


def _dense_call(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, ms: tuple[np.ndarray, ...], zeros: tuple[int, ...]
) -> np.ndarray:
    """y (uint8) requantized with ms = (multiplier, shift) and zeros = (x_zero, y_zero, low), or with ms
    empty the int32 accumulators."""
    y = np.empty((x.shape[0], w.shape[0]), np.uint8)
    acc = np.empty((x.shape[0], w.shape[0]), np.int32)
    unused = np.empty(0, np.int32)
    _dense(x, w, bias, *(ms or (unused, unused)), *zeros, y, acc, bool(ms))
    return y if ms else acc


def dense_q8_forward(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    multiplier: np.ndarray,
    shift: np.ndarray,
    *,
    x_zero: int,
    y_zero: int,
    relu: bool,
) -> np.ndarray:
    return _dense_call(x, w, bias, (multiplier, shift), (x_zero, y_zero, y_zero if relu else 0))


def dense_q8_acc(x: np.ndarray, w: np.ndarray, bias: np.ndarray, *, x_zero: int) -> np.ndarray:
    return _dense_call(x, w, bias, (), (x_zero, 0, 0))


def maxpool2d_q8_forward(
    x: np.ndarray,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
) -> np.ndarray:
    y = np.empty(spec.maxpool_q8_shape(x, kernel_size, stride, padding, ceil_mode), np.uint8)
    _maxpool(x, *kernel_size, *stride, *padding, y)
    return y


conv2d_q8_pool_forward = spec.conv_then_pool(conv2d_q8_forward, maxpool2d_q8_forward)


# An elementwise pass, memory-bound: the specification's NumPy version.
quantize_input_q8 = spec.quantize_input_q8
