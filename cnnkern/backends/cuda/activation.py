"""Launchers of activation.cu: the elementwise activations."""

from __future__ import annotations

from ..._typing import BackendArray
from .launch import Launchers, _act_code, _f, _grid_1d, _ints


class ActivationKernels(Launchers):
    """The activation kernels of :class:`~cnnkern.backends.cuda.CudaBackend` (a mixin: it uses the backend's
    ``_launch``, ``_empty`` and ``_cp``), launching ``activation.cu``."""

    def activation_forward(self, x: BackendArray, kind: str, *, alpha: float) -> BackendArray:
        y = self._empty(x.shape)
        args = (x, y, *_ints(x.size, _act_code(kind)), _f(alpha))
        self._launch("activation", "activation_forward", _grid_1d(x.size), args)
        return y

    def activation_backward(
        self, dy: BackendArray, y: BackendArray, kind: str, *, alpha: float
    ) -> BackendArray:
        dx = self._empty(dy.shape)
        args = (dy, y, dx, *_ints(dy.size, _act_code(kind)), _f(alpha))
        self._launch("activation", "activation_backward", _grid_1d(dy.size), args)
        return dx
