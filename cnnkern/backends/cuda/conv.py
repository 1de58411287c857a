"""Launchers of conv.cu: convolution forward (bias and activation in the GEMM epilogue) and backward."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ... import shapes
from ..._typing import BackendArray
from .launch import (
    _MAX_GRID_YZ,
    _TILE,
    Launchers,
    _act_code,
    _cdiv,
    _check_gemm,
    _check_grid,
    _f,
    _gemm_splits,
    _grid_1d,
    _i,
    _ints,
)


class ConvKernels(Launchers):
    """The conv kernels of :class:`~cnnkern.backends.cuda.CudaBackend` (a mixin: it uses the backend's
    ``_launch``, ``_empty`` and ``_cp``), launching ``conv.cu``."""

    def conv2d_forward(
        self,
        x: BackendArray,
        w: BackendArray,
        b: BackendArray | None = None,
        *,
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        groups: int,
    ) -> BackendArray:
        return self.conv2d_bias_act_forward(
            x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups, activation=None
        )

    def conv2d_bias_act_forward(
        self,
        x: BackendArray,
        w: BackendArray,
        b: BackendArray | None = None,
        *,
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        groups: int,
        activation: str | None = None,
        alpha: float = 0.01,
    ) -> BackendArray:
        """``activation_forward(conv2d_forward(x, w, b), activation)`` in one launch (epilogue fusion)."""
        act = _act_code(activation)
        geo = _ConvGeometry(x.shape, w.shape, stride, padding, dilation, groups)
        y = self._empty((geo.n, geo.k, geo.p, geo.q))
        _check_gemm(
            "conv2d_forward",
            pixels=geo.n * geo.p * geo.q,
            reduction=geo.cg * geo.r * geo.s,
            plane=geo.h * geo.w,
        )
        _check_grid("conv2d_forward", "groups", groups)
        grid: tuple[int, ...] = (_cdiv(geo.n * geo.p * geo.q, _TILE), _cdiv(geo.kg, _TILE), groups)
        has_bias = b is not None
        args = (x, w, b if has_bias else w, y, *geo.args(), _i(has_bias), _i(act), _f(alpha))
        self._launch("conv", "conv2d_forward", grid, args)
        return y

    def conv2d_backward(
        self,
        dy: BackendArray,
        x: BackendArray,
        w: BackendArray,
        *,
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        groups: int,
        need_dx: bool,
        need_dw: bool,
        need_db: bool,
    ) -> tuple[BackendArray | None, BackendArray | None, BackendArray | None]:
        geo = _ConvGeometry(x.shape, w.shape, stride, padding, dilation, groups)
        _check_grid("conv2d_backward", "groups", groups)
        dx: Any = None
        dw: Any = None
        db: Any = None
        if need_dx:
            dx = self._empty(x.shape)
            _check_gemm("conv2d_backward", pixels=geo.n * geo.h * geo.w, reduction=geo.kg * geo.r * geo.s)
            grid = (_cdiv(geo.n * geo.h * geo.w, _TILE), _cdiv(geo.cg, _TILE), groups)
            self._launch("conv", "conv2d_backward_data", grid, (dy, w, dx, *geo.args()))
        if need_dw:
            dw = self._empty(w.shape)
            depth = geo.n * geo.p * geo.q
            crs = geo.cg * geo.r * geo.s
            _check_gemm("conv2d_backward", reduction=depth, weight_columns=crs, plane=geo.h * geo.w)
            tiles = _cdiv(crs, _TILE) * _cdiv(geo.kg, _TILE) * groups
            splits, chunk = _gemm_splits(depth, tiles, _MAX_GRID_YZ // groups)
            ws = dw if splits == 1 else self._empty((splits,) + tuple(w.shape))
            grid = (_cdiv(crs, _TILE), _cdiv(geo.kg, _TILE), groups * splits)
            self._launch(
                "conv", "conv2d_backward_weight", grid, (dy, x, ws, *geo.args(), _i(splits), _i(chunk))
            )
            if splits > 1:
                self._launch("conv", "sum_splits", _grid_1d(dw.size), (ws, dw, _i(dw.size), _i(splits)))
        if need_db:
            db = self._channel_sum("conv", dy, self._empty((geo.k,)), geo.n, geo.k, geo.p * geo.q)
        return dx, dw, db


class _ConvGeometry:
    """Sizes of one convolution and the kernel's 16 shape arguments (CONV_SHAPE_ARGS in conv.cu)."""

    def __init__(
        self,
        x_shape: Sequence[int],
        w_shape: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        groups: int,
    ) -> None:
        self.n, self.c, self.h, self.w = x_shape
        self.k, self.cg, self.r, self.s = w_shape
        self.sh, self.sw = stride
        self.pt, self.pb, self.pl, self.pr = padding
        self.dh, self.dw = dilation
        self.groups = groups
        self.kg = self.k // groups
        self.p = shapes.conv_out(self.h, self.r, self.sh, self.pt, self.pb, self.dh)
        self.q = shapes.conv_out(self.w, self.s, self.sw, self.pl, self.pr, self.dw)

    # the order of CONV_SHAPE_ARGS
    _ARGS = ("n", "c", "h", "w", "k", "p", "q", "r", "s", "sh", "sw", "pt", "pl", "dh", "dw", "groups")

    def args(self) -> tuple[np.int64, ...]:
        return _ints(*(getattr(self, name) for name in self._ARGS))
