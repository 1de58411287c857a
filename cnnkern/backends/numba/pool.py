"""Max and average pooling, forward and backward; one parallel task per (n, c) plane.

x (N,C,H,W) -> y (N,C,P,Q), window (kh, kw), stride (sh, sw), padding (ph, pw), dilation (max pool).
Output position (p, q) reads input rows ih = p*sh - ph + i*dh (i < kh), columns likewise. Every plane is
independent, so the backward passes (which scatter-add where windows overlap) are race-free with each task
owning one input plane.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit, prange

from ...shapes import pool_out
from . import alloc

if TYPE_CHECKING:
    from ..base import Backend
    from . import MakeArray, WarmupCalls


@njit(cache=True)
def _first_inside(start, step):
    """The first of start, start + step, start + 2*step, ... that is >= 0."""
    if start >= 0:
        return start
    return start + ((step - 1 - start) // step) * step


@njit(cache=True)
def _maxpool_plane(plane, kh, kw, sh, sw, ph, pw, dh, dw, yp, ap):
    """One (n, c) plane: yp[p, q] = max over the window with padding as -inf; ap[p, q] = flat ih*W + iw of
    the first maximum in row-major order, or of the last NaN if the window holds one (update rule
    `v > best or isnan(v)`). Before any element is taken the index is the window's first in-bounds
    position (PyTorch's)."""
    H, W = plane.shape
    P, Q = yp.shape
    # Without a NaN in the plane the rule is just `v > best`; the branchy NaN test costs ~4x in the scan,
    # so look for NaNs first (an OR over the plane, which vectorises).
    has_nan = False
    for ih in range(H):
        row = plane[ih]
        for iw in range(W):
            has_nan |= math.isnan(row[iw])
    for p in range(P):
        h0 = _first_inside(p * sh - ph, dh)
        h1 = min(p * sh - ph + (kh - 1) * dh + 1, H)
        for q in range(Q):
            w0 = _first_inside(q * sw - pw, dw)
            w1 = min(q * sw - pw + (kw - 1) * dw + 1, W)
            best = -np.inf
            index = h0 * W + w0
            # while loops: a range with a run-time step costs a division per window row
            ih = h0
            while ih < h1:
                row = plane[ih]
                iw = w0
                while iw < w1:
                    v = row[iw]
                    if v > best or (has_nan and math.isnan(v)):
                        best = v
                        index = ih * W + iw
                    iw += dw
                ih += dh
            yp[p, q] = best
            ap[p, q] = index


@njit(cache=True)
def _max2x2_taps(v0, v1, v2, v3, i0, W):
    """The maximum of one window's taps (order (0,0) (0,1) (1,0) (1,1)) and its flat index, without NaN:
    `v > best` as selects, no branches."""
    best, at = v0, i0
    take = v1 > best
    best, at = (v1 if take else best), (i0 + 1 if take else at)
    take = v2 > best
    best, at = (v2 if take else best), (i0 + W if take else at)
    take = v3 > best
    best, at = (v3 if take else best), (i0 + W + 1 if take else at)
    return best, at


@njit(cache=True)
def _maxpool_plane_2x2(plane, yp, ap):
    """_maxpool_plane for the 2x2 window, stride 2, no padding, every window whole: the four taps unrolled,
    the same update rule; a plane without NaN (checked first, an OR that vectorises) takes the branch-free
    comparison."""
    H, W = plane.shape
    P, Q = yp.shape
    has_nan = False
    for ih in range(2 * P):
        row = plane[ih]
        for iw in range(W):
            has_nan |= math.isnan(row[iw])
    for p in range(P):
        r0 = plane[2 * p]
        r1 = plane[2 * p + 1]
        base = 2 * p * W
        yrow = yp[p]
        arow = ap[p]
        if not has_nan:
            for q in range(Q):
                c = 2 * q
                yrow[q], arow[q] = _max2x2_taps(r0[c], r0[c + 1], r1[c], r1[c + 1], base + c, W)
            continue
        for q in range(Q):
            c = 2 * q
            best = r0[c]
            at = base + c
            v = r0[c + 1]
            if v > best or math.isnan(v):
                best, at = v, base + c + 1
            v = r1[c]
            if v > best or math.isnan(v):
                best, at = v, base + W + c
            v = r1[c + 1]
            if v > best or math.isnan(v):
                best, at = v, base + W + c + 1
            yrow[q] = best
            arow[q] = at


@njit(cache=True)
def _maxpool_plane_backward(g, a, dplane):
    """dplane.flat[a[p, q]] += g[p, q], dplane zeroed first."""
    flat = dplane.reshape(dplane.size)
    flat[:] = 0
    P, Q = g.shape
    for p in range(P):
        for q in range(Q):
            flat[a[p, q]] += g[p, q]


@njit(cache=True)
def _avg_window(o, s, pad, k, L):
    """Window [lo, hi) clipped to the image along one dim, and its length clipped only to the padded edge
    (PyTorch: hi = min(o*s - p + k, L + p) before clipping to [0, L))."""
    lo = o * s - pad
    hi = min(lo + k, L + pad)
    padded = hi - lo
    return max(lo, 0), min(hi, L), padded


@njit(cache=True)
def _avgpool_plane(plane, kh, kw, sh, sw, ph, pw, count_include_pad, yp):
    """yp = sum over the clipped window / divisor; divisor = padded window size if count_include_pad, else
    the number of real elements. Sums accumulate in float64."""
    H, W = plane.shape
    P, Q = yp.shape
    for p in range(P):
        h0, h1, hpad = _avg_window(p, sh, ph, kh, H)
        for q in range(Q):
            w0, w1, wpad = _avg_window(q, sw, pw, kw, W)
            if h0 >= h1 or w0 >= w1:
                yp[p, q] = 0
                continue
            s = 0.0
            for ih in range(h0, h1):
                row = plane[ih]
                for iw in range(w0, w1):
                    s += row[iw]
            divisor = hpad * wpad if count_include_pad else (h1 - h0) * (w1 - w0)
            yp[p, q] = s / divisor


@njit(cache=True)
def _avgpool_plane_backward(g, kh, kw, sh, sw, ph, pw, count_include_pad, dplane):
    """dplane[window of (p, q)] += g[p, q] / divisor, with the forward's divisor; dplane zeroed first."""
    H, W = dplane.shape
    P, Q = g.shape
    dplane[:, :] = 0
    for p in range(P):
        h0, h1, hpad = _avg_window(p, sh, ph, kh, H)
        for q in range(Q):
            w0, w1, wpad = _avg_window(q, sw, pw, kw, W)
            if h0 >= h1 or w0 >= w1:
                continue
            divisor = hpad * wpad if count_include_pad else (h1 - h0) * (w1 - w0)
            share = g[p, q] / divisor
            for ih in range(h0, h1):
                row = dplane[ih]
                for iw in range(w0, w1):
                    row[iw] += share


# The parallel loops below only hand out planes: loop bodies with branches compile to much slower code
# inside a prange body than in a plain @njit function (measured 7x for the max-pool window scan).


@njit(parallel=True, cache=True)
def _maxpool_forward(x, kh, kw, sh, sw, ph, pw, dh, dw, y, argmax):
    C = x.shape[1]
    P, Q = y.shape[2], y.shape[3]
    # the classic 2x2 / stride 2 pool with every window inside the plane takes the unrolled scan
    classic = kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0 and dh == 1 and dw == 1
    classic = classic and 2 * P <= x.shape[2] and 2 * Q <= x.shape[3]
    for t in prange(x.shape[0] * C):
        n, c = t // C, t % C
        if classic:
            _maxpool_plane_2x2(x[n, c], y[n, c], argmax[n, c])
        else:
            _maxpool_plane(x[n, c], kh, kw, sh, sw, ph, pw, dh, dw, y[n, c], argmax[n, c])


@njit(parallel=True, cache=True)
def _maxpool_backward(dy, argmax, dx):
    C = dx.shape[1]
    for t in prange(dx.shape[0] * C):
        n, c = t // C, t % C
        _maxpool_plane_backward(dy[n, c], argmax[n, c], dx[n, c])


@njit(parallel=True, cache=True)
def _avgpool_forward(x, kh, kw, sh, sw, ph, pw, count_include_pad, y):
    C = x.shape[1]
    for t in prange(x.shape[0] * C):
        n, c = t // C, t % C
        _avgpool_plane(x[n, c], kh, kw, sh, sw, ph, pw, count_include_pad, y[n, c])


@njit(parallel=True, cache=True)
def _avgpool_backward(dy, kh, kw, sh, sw, ph, pw, count_include_pad, dx):
    C = dx.shape[1]
    for t in prange(dx.shape[0] * C):
        n, c = t // C, t % C
        _avgpool_plane_backward(dy[n, c], kh, kw, sh, sw, ph, pw, count_include_pad, dx[n, c])


def _pool_shape(
    x_shape: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
) -> tuple[int, int, int, int]:
    N, C, H, W = x_shape
    P = pool_out(H, kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode)
    Q = pool_out(W, kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode)
    return (N, C, P, Q)


def maxpool2d_forward(
    x: np.ndarray,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
) -> tuple[np.ndarray, np.ndarray]:
    shape = _pool_shape(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    y = alloc.empty(shape, x.dtype)
    argmax = alloc.empty(shape, np.int64)
    kh, kw = int(kernel_size[0]), int(kernel_size[1])
    sh, sw = int(stride[0]), int(stride[1])
    ph, pw = int(padding[0]), int(padding[1])
    dh, dw = int(dilation[0]), int(dilation[1])
    _maxpool_forward(x, kh, kw, sh, sw, ph, pw, dh, dw, y, argmax)
    return y, argmax


def maxpool2d_backward(dy: np.ndarray, argmax: np.ndarray, x_shape: Sequence[int]) -> np.ndarray:
    dx = alloc.empty(tuple(int(d) for d in x_shape), dy.dtype)
    _maxpool_backward(dy, argmax, dx)
    return dx


def avgpool2d_forward(
    x: np.ndarray,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
) -> np.ndarray:
    y = np.empty(_pool_shape(x.shape, kernel_size, stride, padding, (1, 1), ceil_mode), x.dtype)
    _avgpool_forward(
        x, int(kernel_size[0]), int(kernel_size[1]), int(stride[0]), int(stride[1]),
        int(padding[0]), int(padding[1]), bool(count_include_pad), y,
    )  # fmt: skip
    return y


def avgpool2d_backward(
    dy: np.ndarray,
    x_shape: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
) -> np.ndarray:
    dx = np.empty(tuple(int(d) for d in x_shape), dy.dtype)
    _avgpool_backward(
        dy, int(kernel_size[0]), int(kernel_size[1]), int(stride[0]), int(stride[1]),
        int(padding[0]), int(padding[1]), bool(count_include_pad), dx,
    )  # fmt: skip
    return dx


def warmup_calls(be: Backend, rand: MakeArray, zeros: MakeArray) -> WarmupCalls:
    """{kernel: closure} calling each kernel of this file once on tiny inputs that reach every compiled
    loop (the package's warmup(); ``rand(*shape)``/``zeros(*shape)`` make arrays of the dtype warmed)."""
    pool: dict[str, Any] = dict(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=False)
    avg: dict[str, Any] = dict(pool, count_include_pad=True)
    x = rand(2, 2, 4, 4)
    saved: dict[str, Any] = {}  # each backward runs on what its forward (called just before) returned

    def save(key: str, value: Any) -> Any:
        saved[key] = value
        return value

    return {
        "maxpool2d_forward": lambda: save("max", be.maxpool2d_forward(x, dilation=(1, 1), **pool)),
        "maxpool2d_backward": lambda: be.maxpool2d_backward(saved["max"][0], saved["max"][1], x.shape),
        "avgpool2d_forward": lambda: save("avg", be.avgpool2d_forward(x, **avg)),
        "avgpool2d_backward": lambda: be.avgpool2d_backward(saved["avg"], x.shape, **avg),
    }
