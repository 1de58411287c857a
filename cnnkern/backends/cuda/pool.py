"""Launchers of pool.cu: max and average pooling, forward and backward."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ... import shapes
from ..._typing import BackendArray
from .launch import _BLOCK, _MAX_BLOCKS, Launchers, _cdiv, _grid_1d, _i, _ints


class PoolKernels(Launchers):
    """The pool kernels of :class:`~cnnkern.backends.cuda.CudaBackend` (a mixin: it uses the backend's
    ``_launch``, ``_empty`` and ``_cp``), launching ``pool.cu``."""

    def maxpool2d_forward(
        self,
        x: BackendArray,
        *,
        kernel_size: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        ceil_mode: bool,
    ) -> tuple[BackendArray, BackendArray]:
        n, c, h, w = x.shape
        p = shapes.pool_out(h, kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode)
        q = shapes.pool_out(w, kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode)
        y = self._empty((n, c, p, q))
        argmax = self._empty((n, c, p, q), np.int64)
        sizes = _ints(n * c, h, w, p, q, *kernel_size, *stride, *padding, *dilation)
        args = (x, y, argmax, *sizes)
        self._launch("pool", "maxpool2d_forward", _grid_1d(y.size), args)
        return y, argmax

    def maxpool2d_backward(
        self, dy: BackendArray, argmax: BackendArray, x_shape: Sequence[int]
    ) -> BackendArray:
        n, c, h, w = x_shape
        dx = self._cp.zeros(tuple(x_shape), dtype=np.float32)
        planes = n * c
        warps_per_block = _BLOCK // 32
        grid = (max(1, min(_cdiv(planes, warps_per_block), _MAX_BLOCKS)),)
        pq = dy.shape[2] * dy.shape[3]
        self._launch("pool", "maxpool2d_backward", grid, (dy, argmax, dx, _i(planes), _i(h * w), _i(pq)))
        return dx

    def _avg_args(
        self,
        n: int,
        c: int,
        h: int,
        w: int,
        p: int,
        q: int,
        kernel_size: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[int],
        count_include_pad: bool,
    ) -> tuple[np.int64, ...]:
        return _ints(n * c, h, w, p, q, *kernel_size, *stride, *padding, bool(count_include_pad))

    def avgpool2d_forward(
        self,
        x: BackendArray,
        *,
        kernel_size: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[int],
        ceil_mode: bool,
        count_include_pad: bool,
    ) -> BackendArray:
        n, c, h, w = x.shape
        p = shapes.pool_out(h, kernel_size[0], stride[0], padding[0], 1, ceil_mode)
        q = shapes.pool_out(w, kernel_size[1], stride[1], padding[1], 1, ceil_mode)
        y = self._empty((n, c, p, q))
        args = self._avg_args(n, c, h, w, p, q, kernel_size, stride, padding, count_include_pad)
        self._launch("pool", "avgpool2d_forward", _grid_1d(y.size), (x, y, *args))
        return y

    def avgpool2d_backward(
        self,
        dy: BackendArray,
        x_shape: Sequence[int],
        *,
        kernel_size: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[int],
        ceil_mode: bool,
        count_include_pad: bool,
    ) -> BackendArray:
        n, c, h, w = x_shape
        p, q = dy.shape[2], dy.shape[3]
        dx = self._empty(tuple(x_shape))
        args = self._avg_args(n, c, h, w, p, q, kernel_size, stride, padding, count_include_pad)
        self._launch("pool", "avgpool2d_backward", _grid_1d(dx.size), (dy, dx, *args))
        return dx
