"""Reference augmentation kernels (forward only; the per-sample parameters come in as arrays).

* ``augment_shift_forward``: flip, then translate / crop with zero padding, then erase a box: pure copies,
  so every backend must agree exactly.
* ``augment_affine_forward``: bilinear sampling at an affine map of each output pixel, in pixel-index
  coordinates (pixel centres at integers, as Keras's ``affine_transform``); each of the four taps that
  falls outside the image reads ``fill_value`` (Keras's ``fill_mode='constant'``).
* ``augment_color_forward``: contrast about each (n, c) plane's mean, plus brightness, clipped.
"""

from __future__ import annotations

import numpy as np


def augment_shift_forward(
    x: np.ndarray, flip: np.ndarray, offset: np.ndarray, erase: np.ndarray, *, out_hw: tuple[int, int]
) -> np.ndarray:
    n, c, h, w = x.shape
    oh, ow = out_hw
    y = np.zeros((n, c, oh, ow), x.dtype)
    for b in range(n):
        img = x[b]
        if flip[b, 0]:
            img = img[:, :, ::-1]
        if flip[b, 1]:
            img = img[:, ::-1, :]
        dy, dx = int(offset[b, 0]), int(offset[b, 1])
        # output rows i with 0 <= i - dy < h, columns likewise
        i0, i1 = max(0, dy), min(oh, h + dy)
        j0, j1 = max(0, dx), min(ow, w + dx)
        if i0 < i1 and j0 < j1:
            y[b, :, i0:i1, j0:j1] = img[:, i0 - dy : i1 - dy, j0 - dx : j1 - dx]
        top, left, eh, ew = (int(v) for v in erase[b])
        y[b, :, max(0, top) : max(0, top + eh), max(0, left) : max(0, left + ew)] = 0
    return y


def augment_affine_forward(x: np.ndarray, theta: np.ndarray, *, fill_value: float) -> np.ndarray:
    n, c, h, w = x.shape
    ii, jj = np.meshgrid(np.arange(h, dtype=x.dtype), np.arange(w, dtype=x.dtype), indexing="ij")
    y = np.empty_like(x)
    fill = x.dtype.type(fill_value)
    for b in range(n):
        t = theta[b].astype(x.dtype)
        sx = t[0] * jj + t[1] * ii + t[2]
        sy = t[3] * jj + t[4] * ii + t[5]
        x0, y0 = np.floor(sx), np.floor(sy)
        fx, fy = sx - x0, sy - y0
        acc = np.zeros((c, h, w), x.dtype)
        for ty, wy in ((y0, 1 - fy), (y0 + 1, fy)):
            for tx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
                inside = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
                yi = np.where(inside, ty, 0).astype(np.int64)
                xi = np.where(inside, tx, 0).astype(np.int64)
                tap = np.where(inside, x[b][:, yi, xi], fill)
                acc += wy * wx * tap
        y[b] = acc
    return y


def augment_color_forward(
    x: np.ndarray, contrast: np.ndarray, brightness: np.ndarray, *, low: float, high: float
) -> np.ndarray:
    mean = x.mean(axis=(2, 3), keepdims=True)
    cf = contrast.astype(x.dtype)[:, None, None, None]
    bf = brightness.astype(x.dtype)[:, None, None, None]
    y = (x - mean) * cf + mean + bf
    return np.clip(y, x.dtype.type(low), x.dtype.type(high)).astype(x.dtype)
