"""Launchers of quant.cu: the cuda backend's int8 kernels, with the table's signatures
(:mod:`cnnkern.kernels.quant`), results equal to the reference's (:mod:`cnnkern.backends.reference.quant`).
They take and return NumPy arrays (the int8 model runs on the host, :class:`cnnkern.compress.QuantizedModel`),
moving each call's arrays to the device and back. The front door
(:class:`cnnkern.compress.kernels.QuantKernels`) has checked the arguments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..reference import quant as spec
from .launch import _grid_1d, _ints


class CudaQuantKernels:
    """The int8 kernels of the CUDA backend ``backend`` (a :class:`~cnnkern.backends.cuda.CudaBackend`)."""

    def __init__(self, backend: Any) -> None:
        self.be = backend

    def _put(self, a: np.ndarray) -> Any:
        return self.be._cp.asarray(np.ascontiguousarray(a))

    def _get(self, a: Any) -> np.ndarray:
        return a if isinstance(a, np.ndarray) else a.get()

    def conv2d_q8_forward(
        self,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray,
        multiplier: np.ndarray,
        shift: np.ndarray,
        *,
        x_zero: int,
        y_zero: int,
        relu: bool,
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        groups: int,
    ) -> np.ndarray:
        n, p, q, k = spec.conv_q8_shape(x, w, stride, padding, dilation)
        _, h, wd, c = x.shape
        _, _, r, s = w.shape
        y = self.be._empty((n, p, q, k), np.uint8)
        arrays = [self._put(a) for a in (x, w.transpose(0, 2, 3, 1), bias, multiplier, shift)]
        sizes = _ints(n, h, wd, c, k, r, s, p, q, *stride, padding[0], padding[2], *dilation, groups)
        zeros = _ints(x_zero, y_zero, y_zero if relu else 0)
        self.be._launch("quant", "conv2d_q8", _grid_1d(y.size), (*arrays, y, *sizes, *zeros))
        return self._get(y)

    def _dense(
        self,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray,
        ms: tuple[np.ndarray, ...],
        zeros: tuple[int, ...],
    ) -> np.ndarray:
        """y (uint8) requantized with ms = (multiplier, shift) and zeros = (x_zero, y_zero, low), or with ms
        empty the int32 accumulators."""
        n, out = x.shape[0], w.shape[0]
        y = self.be._empty((n, out), np.uint8)
        acc = self.be._empty((n, out), np.int32)
        unused = np.zeros(1, np.int32)
        arrays = [self._put(a) for a in (x, w, bias, *(ms or (unused, unused)))]
        args = (*arrays, y, acc, *_ints(n, x.shape[1], out, *zeros, bool(ms)))
        self.be._launch("quant", "dense_q8", _grid_1d(n * out), args)
        return self._get(y if ms else acc)

    def dense_q8_forward(
        self,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray,
        multiplier: np.ndarray,
        shift: np.ndarray,
        *,
        x_zero: int,
        y_zero: int,
        relu: bool,
    ) -> np.ndarray:
        return self._dense(x, w, bias, (multiplier, shift), (x_zero, y_zero, y_zero if relu else 0))

    def dense_q8_acc(self, x: np.ndarray, w: np.ndarray, bias: np.ndarray, *, x_zero: int) -> np.ndarray:
        return self._dense(x, w, bias, (), (x_zero, 0, 0))

    def maxpool2d_q8_forward(
        self,
        x: np.ndarray,
        *,
        kernel_size: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[int],
        ceil_mode: bool,
    ) -> np.ndarray:
        n, p, q, c = spec.maxpool_q8_shape(x, kernel_size, stride, padding, ceil_mode)
        h, w = x.shape[1:3]
        y = self.be._empty((n, p, q, c), np.uint8)
        sizes = _ints(n, h, w, c, p, q, *kernel_size, *stride, *padding)
        self.be._launch("quant", "maxpool2d_q8", _grid_1d(y.size), (self._put(x), y, *sizes))
        return self._get(y)

    conv2d_q8_pool_forward = spec.conv_then_pool(None, None)  # this class's conv, then its max pool

    def quantize_input_q8(self, x: np.ndarray, *, scale: float, zero: int) -> np.ndarray:
        """On the host, as the specification does: the int8 model's arrays live there (see the class)."""
        return spec.quantize_input_q8(x, scale=scale, zero=zero)
