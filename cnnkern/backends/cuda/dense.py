"""Launchers of dense.cu: the dense layer forward (bias and activation in the epilogue) and backward."""

from __future__ import annotations

from typing import Any

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


class DenseKernels(Launchers):
    """The dense kernels of :class:`~cnnkern.backends.cuda.CudaBackend` (a mixin: it uses the backend's
    ``_launch``, ``_empty`` and ``_cp``), launching ``dense.cu``."""

    def dense_forward(self, x: BackendArray, w: BackendArray, b: BackendArray | None = None) -> BackendArray:
        return self.dense_bias_act_forward(x, w, b, activation=None)

    def dense_bias_act_forward(
        self,
        x: BackendArray,
        w: BackendArray,
        b: BackendArray | None = None,
        *,
        activation: str | None = None,
        alpha: float = 0.01,
    ) -> BackendArray:
        """``activation_forward(dense_forward(x, w, b), activation)`` in one launch (epilogue fusion)."""
        act = _act_code(activation)
        n, i = x.shape
        o = w.shape[0]
        _check_gemm("dense_forward", batch=n, in_features=i, out_features=o)
        _check_grid("dense_forward", "batch / 64", _cdiv(n, _TILE))
        y = self._empty((n, o))
        has_bias = b is not None
        splits, chunk = _gemm_splits(i, _cdiv(o, _TILE) * _cdiv(n, _TILE), _MAX_GRID_YZ)
        ws = y if splits == 1 else self._empty((splits, n, o))
        bias = b if has_bias else w
        args: tuple[Any, ...] = (x, w, bias, ws, *_ints(n, i, o, has_bias, act), _f(alpha), _i(chunk))
        self._launch("dense", "dense_forward", (_cdiv(o, _TILE), _cdiv(n, _TILE), splits), args)
        if splits > 1:
            args = (ws, bias, y, *_ints(y.size, o, splits, has_bias, act), _f(alpha))
            self._launch("dense", "dense_sum_splits_bias_act", _grid_1d(y.size), args)
        return y

    def dense_backward(
        self, dy: BackendArray, x: BackendArray, w: BackendArray, *, need_dx: bool, need_db: bool
    ) -> tuple[BackendArray | None, BackendArray, BackendArray | None]:
        n, i = x.shape
        o = w.shape[0]
        _check_gemm("dense_backward", batch=n, in_features=i, out_features=o)
        dx: Any = None
        db: Any = None
        if need_dx:
            _check_grid("dense_backward", "batch / 64", _cdiv(n, _TILE))
            dx = self._empty((n, i))
            grid: tuple[int, ...] = (_cdiv(i, _TILE), _cdiv(n, _TILE))
            self._launch("dense", "dense_backward_data", grid, (dy, w, dx, *_ints(n, i, o)))
        _check_grid("dense_backward", "out_features / 64", _cdiv(o, _TILE))
        dw = self._empty((o, i))
        splits, chunk = _gemm_splits(n, _cdiv(i, _TILE) * _cdiv(o, _TILE), _MAX_GRID_YZ)
        ws = dw if splits == 1 else self._empty((splits, o, i))
        grid = (_cdiv(i, _TILE), _cdiv(o, _TILE), splits)
        self._launch("dense", "dense_backward_weight", grid, (dy, x, ws, *_ints(n, i, o, chunk)))
        if splits > 1:
            self._launch("dense", "sum_splits", _grid_1d(dw.size), (ws, dw, _i(dw.size), _i(splits)))
        if need_db:
            db = self._channel_sum("dense", dy, self._empty((o,)), n, o, 1)
        return dx, dw, db
