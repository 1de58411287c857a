"""The cpp backend's int8 kernels (csrc/kernels/quant.cpp, with the AVX2 / AVX-512 VNNI GEMMs of csrc/isa):
the reference's signatures (:mod:`cnnkern.backends.reference.quant`, the specification they equal
exactly). The value checks of the format (7-bit codes, weights in [-127, 127], the requantization
constants) are the reference's own, run here before the call."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .cpp import _cpp
from .reference import quant as spec


def _c(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a)


def _check_requant(multiplier: np.ndarray, shift: np.ndarray, y_zero: int, k: int) -> None:
    spec.requantize(np.zeros((1, k), np.int32), multiplier, shift, y_zero, False, axis=1)  # raises if invalid


def conv2d_q8_forward(
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
    spec._check_common(x, w, bias, x_zero, int(np.prod(w.shape[1:])))
    _check_requant(multiplier, shift, y_zero, w.shape[0])
    return _cpp.conv2d_q8_forward(
        _c(x),
        _c(w),
        _c(bias),
        _c(multiplier),
        _c(shift),
        x_zero=int(x_zero),
        y_zero=int(y_zero),
        relu=bool(relu),
        stride=tuple(stride),
        padding=tuple(padding),
        dilation=tuple(dilation),
        groups=int(groups),
    )


def dense_q8_forward(
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
    spec._check_common(x, w, bias, x_zero, w.shape[-1])
    _check_requant(multiplier, shift, y_zero, w.shape[0])
    return _cpp.dense_q8_forward(
        _c(x),
        _c(w),
        _c(bias),
        _c(multiplier),
        _c(shift),
        x_zero=int(x_zero),
        y_zero=int(y_zero),
        relu=bool(relu),
    )


def dense_q8_acc(x: np.ndarray, w: np.ndarray, bias: np.ndarray, *, x_zero: int) -> np.ndarray:
    spec._check_common(x, w, bias, x_zero, w.shape[-1])
    return _cpp.dense_q8_acc(_c(x), _c(w), _c(bias), x_zero=int(x_zero))


def maxpool2d_q8_forward(
    x: np.ndarray,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
) -> np.ndarray:
    if x.dtype != np.uint8 or x.ndim != 4:
        raise TypeError(f"x must be uint8 (N,C,H,W), got {x.dtype} {x.shape}")
    return _cpp.maxpool2d_q8_forward(
        _c(x),
        kernel_size=tuple(kernel_size),
        stride=tuple(stride),
        padding=tuple(padding),
        ceil_mode=bool(ceil_mode),
    )
