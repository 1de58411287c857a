"""Augmentation kernels (forward only), one parallel task per (n, c) plane; the same formulas, in the same
order, as reference/augment.py: flips and shifts are copies (exact), the affine kernel is bilinear with
out-of-image taps reading ``fill_value``, the colour kernel sums each plane in float64 for its mean.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numba import njit, prange

from . import alloc

if TYPE_CHECKING:
    from ..base import Backend
    from . import MakeArray, WarmupCalls


@njit(parallel=True, cache=True)
def _shift(x, flip, offset, erase, y):
    n, c, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    for p in prange(n * c):
        b, ch = p // c, p % c
        dy, dx = offset[b, 0], offset[b, 1]
        i0, i1 = min(max(dy, 0), oh), min(max(h + dy, 0), oh)
        j0, j1 = min(max(dx, 0), ow), min(max(w + dx, 0), ow)
        for i in range(oh):
            for j in range(ow):
                y[b, ch, i, j] = 0
        for i in range(i0, i1):
            si = i - dy
            if flip[b, 1] != 0:
                si = h - 1 - si
            for j in range(j0, j1):
                sj = j - dx
                if flip[b, 0] != 0:
                    sj = w - 1 - sj
                y[b, ch, i, j] = x[b, ch, si, sj]
        top, left = erase[b, 0], erase[b, 1]
        r0, r1 = min(max(top, 0), oh), min(max(top + erase[b, 2], 0), oh)
        c0, c1 = min(max(left, 0), ow), min(max(left + erase[b, 3], 0), ow)
        for i in range(r0, r1):
            for j in range(c0, c1):
                y[b, ch, i, j] = 0


@njit(cache=True)
def _tap(x, b, ch, ty, tx, fill):
    h, w = x.shape[2], x.shape[3]
    if ty >= 0 and ty <= h - 1 and tx >= 0 and tx <= w - 1:
        return x[b, ch, int(ty), int(tx)]
    return fill


@njit(parallel=True, cache=True)
def _affine(x, theta, fill, y):
    n, c, h, w = x.shape
    one = x.dtype.type(1)
    for p in prange(n * c):
        b, ch = p // c, p % c
        t0, t1, t2 = theta[b, 0], theta[b, 1], theta[b, 2]
        t3, t4, t5 = theta[b, 3], theta[b, 4], theta[b, 5]
        for i in range(h):
            fi = x.dtype.type(i)
            for j in range(w):
                fj = x.dtype.type(j)
                sx = t0 * fj + t1 * fi + t2
                sy = t3 * fj + t4 * fi + t5
                x0, y0 = math.floor(sx), math.floor(sy)
                fx, fy = sx - x0, sy - y0
                acc = (one - fy) * (one - fx) * _tap(x, b, ch, y0, x0, fill)
                acc += (one - fy) * fx * _tap(x, b, ch, y0, x0 + one, fill)
                acc += fy * (one - fx) * _tap(x, b, ch, y0 + one, x0, fill)
                acc += fy * fx * _tap(x, b, ch, y0 + one, x0 + one, fill)
                y[b, ch, i, j] = acc


@njit(parallel=True, cache=True)
def _color(x, contrast, brightness, lo, hi, y):
    n, c, h, w = x.shape
    for p in prange(n * c):
        b, ch = p // c, p % c
        s = 0.0  # float64 accumulator, as the C++ kernel
        for i in range(h):
            for j in range(w):
                s += x[b, ch, i, j]
        mean = x.dtype.type(s / (h * w))
        cf, bf = contrast[b], brightness[b]
        for i in range(h):
            for j in range(w):
                v = (x[b, ch, i, j] - mean) * cf + mean + bf
                v = lo if v < lo else v
                y[b, ch, i, j] = hi if v > hi else v


def augment_shift_forward(
    x: np.ndarray, flip: np.ndarray, offset: np.ndarray, erase: np.ndarray, out_hw: tuple[int, int]
) -> np.ndarray:
    y = alloc.empty((x.shape[0], x.shape[1], out_hw[0], out_hw[1]), x.dtype)
    _shift(x, flip, offset, erase, y)
    return y


def augment_affine_forward(x: np.ndarray, theta: np.ndarray, fill_value: float) -> np.ndarray:
    y = alloc.empty(x.shape, x.dtype)
    _affine(x, theta.astype(x.dtype, copy=False), x.dtype.type(fill_value), y)
    return y


def augment_color_forward(
    x: np.ndarray, contrast: np.ndarray, brightness: np.ndarray, low: float, high: float
) -> np.ndarray:
    y = alloc.empty(x.shape, x.dtype)
    t = x.dtype.type
    _color(
        x, contrast.astype(x.dtype, copy=False), brightness.astype(x.dtype, copy=False), t(low), t(high), y
    )
    return y


def warmup_calls(be: Backend, rand: MakeArray, zeros: MakeArray) -> WarmupCalls:
    """{kernel: closure} calling each kernel of this file once on tiny inputs."""
    x = rand(2, 1, 4, 5)
    ints = np.array([[1, 0], [0, 1]], np.int64)
    box = np.array([[1, 1, 2, 2], [0, 0, 0, 0]], np.int64)
    theta = rand(2, 6)
    ones = rand(2)
    return {
        "augment_shift_forward": lambda: be.augment_shift_forward(x, ints, ints, box, out_hw=(4, 5)),
        "augment_affine_forward": lambda: be.augment_affine_forward(x, theta, fill_value=0.0),
        "augment_color_forward": lambda: be.augment_color_forward(x, ones, ones, low=0.0, high=1.0),
    }
