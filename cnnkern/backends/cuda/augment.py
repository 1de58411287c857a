"""Launchers of augment.cu: flips / shifts / erasing, the bilinear affine kernel, contrast and brightness."""

from __future__ import annotations

from collections.abc import Sequence

from ..._typing import BackendArray
from .launch import Launchers, _f, _grid_1d, _ints

_COLOR_THREADS = 256  # AUGMENT_THREADS in augment.cu


class AugmentKernels(Launchers):
    """The augmentation kernels of :class:`~cnnkern.backends.cuda.CudaBackend` (a mixin), launching
    ``augment.cu``."""

    def augment_shift_forward(
        self,
        x: BackendArray,
        flip: BackendArray,
        offset: BackendArray,
        erase: BackendArray,
        *,
        out_hw: Sequence[int],
    ) -> BackendArray:
        n, c, h, w = x.shape
        oh, ow = out_hw
        y = self._empty((n, c, oh, ow))
        args = (x, flip, offset, erase, y, *_ints(n, c, h, w, oh, ow))
        self._launch("augment", "augment_shift_forward", _grid_1d(y.size), args)
        return y

    def augment_affine_forward(
        self, x: BackendArray, theta: BackendArray, *, fill_value: float
    ) -> BackendArray:
        y = self._empty(x.shape)
        args = (x, theta, y, *_ints(*x.shape), _f(fill_value))
        self._launch("augment", "augment_affine_forward", _grid_1d(y.size), args)
        return y

    def augment_color_forward(
        self, x: BackendArray, contrast: BackendArray, brightness: BackendArray, *, low: float, high: float
    ) -> BackendArray:
        n, c, h, w = x.shape
        y = self._empty(x.shape)
        args = (x, contrast, brightness, y, *_ints(c, h * w), _f(low), _f(high))
        self._launch("augment", "augment_color_forward", (n * c,), args, block=_COLOR_THREADS)
        return y
