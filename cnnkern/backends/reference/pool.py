"""Reference max and average pooling: x (N,C,H,W) -> y (N,C,P,Q).

Both scan the window taps (i, j) in row-major order over strided views of the padded input, vectorised over
(n, c, p, q).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ... import shapes


def _geometry(
    h: int,
    w: int,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
) -> tuple[int, int]:
    p = shapes.pool_out(h, kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode)
    q = shapes.pool_out(w, kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode)
    return p, q


def _tap(
    a: np.ndarray, i: int, j: int, stride: Sequence[int], dilation: Sequence[int], p: int, q: int
) -> np.ndarray:
    h0, w0 = i * dilation[0], j * dilation[1]
    return a[
        ..., h0 : h0 + stride[0] * (p - 1) + 1 : stride[0], w0 : w0 + stride[1] * (q - 1) + 1 : stride[1]
    ]


def _padded_extent(
    h: int,
    w: int,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    p: int,
    q: int,
) -> tuple[int, int, int, int]:
    """Pad so every window (including the ceil_mode overhang) lies inside the array.

    Returns (top, bottom, left, right)."""
    need_h = (p - 1) * stride[0] + dilation[0] * (kernel_size[0] - 1) + 1
    need_w = (q - 1) * stride[1] + dilation[1] * (kernel_size[1] - 1) + 1
    return padding[0], max(need_h - h - padding[0], 0), padding[1], max(need_w - w - padding[1], 0)


def maxpool2d_forward(
    x: np.ndarray,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Max over each window; padding is -inf. The argmax is the first maximum in row-major order, except
    that a NaN wins and the last NaN of the window is kept (PyTorch's `v > best or isnan(v)` rule); a window
    starts with the index of its first in-bounds element."""
    n, c, h, w = x.shape
    p, q = _geometry(h, w, kernel_size, stride, padding, dilation, ceil_mode)
    t, b, l, r = _padded_extent(h, w, kernel_size, stride, padding, dilation, p, q)
    xpad = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=-np.inf)
    index = np.pad(np.arange(h * w, dtype=np.int64).reshape(h, w), ((t, b), (l, r)), constant_values=-1)
    best = np.full((n, c, p, q), -np.inf, dtype=x.dtype)
    arg = np.full((n, c, p, q), -1, dtype=np.int64)
    for i in range(kernel_size[0]):
        for j in range(kernel_size[1]):
            v = _tap(xpad, i, j, stride, dilation, p, q)
            idx = np.broadcast_to(_tap(index, i, j, stride, dilation, p, q), arg.shape)
            inside = idx >= 0
            take = inside & ((arg < 0) | (v > best) | np.isnan(v))
            best = np.where(take, v, best)
            arg = np.where(take, idx, arg)
    return best, arg


def maxpool2d_backward(dy: np.ndarray, argmax: np.ndarray, x_shape: Sequence[int]) -> np.ndarray:
    n, c, h, w = x_shape
    dx = np.zeros((n * c, h * w), dtype=dy.dtype)
    rows = np.repeat(np.arange(n * c), argmax.shape[2] * argmax.shape[3])
    np.add.at(dx, (rows, argmax.reshape(-1)), dy.reshape(-1))
    return dx.reshape(x_shape)


def _divisor(
    h: int,
    w: int,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    p: int,
    q: int,
    count_include_pad: bool,
    dtype: np.dtype,
) -> np.ndarray:
    """Per-output divisor (P, Q): the window clipped to the padded edge (count_include_pad), else the count of
    real elements. PyTorch: hend = min(hstart + k, H + pad) before clipping to [0, H)."""

    def one_dim(length: int, k: int, s: int, pad: int, out: int) -> np.ndarray:
        start = np.arange(out) * s - pad
        end = np.minimum(start + k, length + pad)
        size = end - start
        real = np.minimum(end, length) - np.maximum(start, 0)
        return size if count_include_pad else real

    return np.outer(
        one_dim(h, kernel_size[0], stride[0], padding[0], p),
        one_dim(w, kernel_size[1], stride[1], padding[1], q),
    ).astype(dtype)


def avgpool2d_forward(
    x: np.ndarray,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
) -> np.ndarray:
    n, c, h, w = x.shape
    p, q = _geometry(h, w, kernel_size, stride, padding, (1, 1), ceil_mode)
    t, b, l, r = _padded_extent(h, w, kernel_size, stride, padding, (1, 1), p, q)
    xpad = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
    total = np.zeros((n, c, p, q), dtype=x.dtype)
    for i in range(kernel_size[0]):
        for j in range(kernel_size[1]):
            total += _tap(xpad, i, j, stride, (1, 1), p, q)
    return total / _divisor(h, w, kernel_size, stride, padding, p, q, count_include_pad, x.dtype)


def avgpool2d_backward(
    dy: np.ndarray,
    x_shape: Sequence[int],
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
) -> np.ndarray:
    n, c, h, w = x_shape
    p, q = dy.shape[2], dy.shape[3]
    t, b, l, r = _padded_extent(h, w, kernel_size, stride, padding, (1, 1), p, q)
    share = dy / _divisor(h, w, kernel_size, stride, padding, p, q, count_include_pad, dy.dtype)
    dxpad = np.zeros((n, c, h + t + b, w + l + r), dtype=dy.dtype)
    for i in range(kernel_size[0]):
        for j in range(kernel_size[1]):
            _tap(dxpad, i, j, stride, (1, 1), p, q)[...] += share
    return np.ascontiguousarray(dxpad[:, :, t : t + h, l : l + w])
