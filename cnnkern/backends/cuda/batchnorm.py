"""Launchers of batchnorm.cu: batch norm forward (with an optional activation) and backward."""

from __future__ import annotations

from typing import Any

from ..._typing import BackendArray
from .launch import Launchers, _act_code, _channel_splits, _f, _floats, _grid_1d, _i, _ints


class BatchnormKernels(Launchers):
    """The batchnorm kernels of :class:`~cnnkern.backends.cuda.CudaBackend` (a mixin: it uses the backend's
    ``_launch``, ``_empty`` and ``_cp``), launching ``batchnorm.cu``."""

    def batchnorm2d_forward(
        self,
        x: BackendArray,
        gamma: BackendArray,
        beta: BackendArray,
        running_mean: BackendArray,
        running_var: BackendArray,
        *,
        training: bool,
        momentum: float,
        eps: float,
    ) -> tuple[BackendArray, BackendArray, BackendArray]:
        return self.batchnorm2d_act_forward(
            x, gamma, beta, running_mean, running_var, training=training, momentum=momentum, eps=eps
        )

    def batchnorm2d_act_forward(
        self,
        x: BackendArray,
        gamma: BackendArray,
        beta: BackendArray,
        running_mean: BackendArray,
        running_var: BackendArray,
        *,
        training: bool,
        momentum: float,
        eps: float,
        activation: str | None = None,
        alpha: float = 0.01,
    ) -> tuple[BackendArray, BackendArray, BackendArray]:
        """batchnorm2d_forward with ``activation`` applied in the normalising pass; returns (y, mean, invstd)
        where y is the activated output."""
        act = _act_code(activation)
        n, c, h, w = x.shape
        hw = h * w
        mean = self._empty((c,))
        invstd = self._empty((c,))
        if training:
            count = n * hw
            splits, chunk = _channel_splits(count, c)
            partial = self._empty((c * splits,))
            common = (_i(n), _i(c), _i(hw), _i(chunk))
            self._launch(
                "batchnorm", "batchnorm2d_partial_moment", (c, splits), (x, x, partial, *common, _i(0))
            )
            self._launch(
                "batchnorm",
                "batchnorm2d_finish_mean",
                _grid_1d(c),
                (partial, mean, _i(c), _i(splits), _i(count)),
            )
            self._launch(
                "batchnorm", "batchnorm2d_partial_moment", (c, splits), (x, mean, partial, *common, _i(1))
            )
            args: tuple[Any, ...] = (
                partial,
                mean,
                invstd,
                running_mean,
                running_var,
                *_ints(c, splits, count),
            )
            args += _floats(momentum, eps)
            self._launch("batchnorm", "batchnorm2d_finish_var", _grid_1d(c), args)
        else:
            args = (running_mean, running_var, mean, invstd, _i(c), _f(eps))
            self._launch("batchnorm", "batchnorm2d_eval_stats", _grid_1d(c), args)
        y = self._empty(x.shape)
        args = (x, mean, invstd, gamma, beta, y, _i(x.size), _i(c), _i(hw), _i(act), _f(alpha))
        self._launch("batchnorm", "batchnorm2d_forward", _grid_1d(x.size), args)
        return y, mean, invstd

    def batchnorm2d_backward(
        self,
        dy: BackendArray,
        x: BackendArray,
        gamma: BackendArray,
        mean: BackendArray,
        invstd: BackendArray,
        *,
        training: bool,
    ) -> tuple[BackendArray, BackendArray, BackendArray]:
        n, c, h, w = x.shape
        hw = h * w
        count = n * hw
        splits, chunk = _channel_splits(count, c)
        dgamma = self._empty((c,))
        dbeta = self._empty((c,))
        if splits == 1:
            pdy, pdyx = dbeta, dgamma
        else:
            pdy, pdyx = self._empty((c * splits,)), self._empty((c * splits,))
        args: tuple[Any, ...] = (dy, x, mean, invstd, pdy, pdyx, _i(n), _i(c), _i(hw), _i(chunk))
        self._launch("batchnorm", "batchnorm2d_partial_grad", (c, splits), args)
        if splits > 1:
            args = (pdy, pdyx, dbeta, dgamma, _i(c), _i(splits))
            self._launch("batchnorm", "batchnorm2d_finish_grad", _grid_1d(c), args)
        dx = self._empty(x.shape)
        args = (dy, x, gamma, mean, invstd, dbeta, dgamma, dx, *_ints(x.size, c, hw, count, bool(training)))
        self._launch("batchnorm", "batchnorm2d_backward", _grid_1d(x.size), args)
        return dx, dgamma, dbeta
