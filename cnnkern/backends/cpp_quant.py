"""The cpp backend's int8 kernels (csrc/kernels/quant.cpp, with the AVX2 / AVX-512 VNNI GEMMs of csrc/isa):
the reference's signatures (:mod:`cnnkern.backends.reference.quant`, the specification they equal
exactly). Dtypes are checked here; shapes and the format's value ranges (7-bit codes, weights in
[-127, 127], the requantization constants) in C++, with the reference's messages, in one pass that costs
far less than NumPy's scans at batch 1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .cpp import _cpp
from .reference import quant as spec


def _c(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a)


def _layer(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    multiplier: np.ndarray,
    shift: np.ndarray,
    x_zero: int,
    y_zero: int,
    relu: bool,
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The checked, contiguous arrays and the epilogue's keywords of a conv or dense call."""
    spec.check_dtypes(x, w, bias=bias, multiplier=multiplier, shift=shift)
    arrays = [_c(a) for a in (x, w, bias, multiplier, shift)]
    return arrays, dict(x_zero=int(x_zero), y_zero=int(y_zero), relu=bool(relu))


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
    arrays, epilogue = _layer(x, w, bias, multiplier, shift, x_zero, y_zero, relu)
    return _cpp.conv2d_q8_forward(
        *arrays,
        **epilogue,
        stride=tuple(stride),
        padding=tuple(padding),
        dilation=tuple(dilation),
        groups=int(groups),
    )


def conv2d_q8_pool_forward(
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
    pool: Sequence[int],
) -> np.ndarray:
    """conv2d_q8_forward, then the max pool of window = stride = ``pool`` (floor mode, no padding), fused
    in C++ (the max taken on the accumulators: the same codes); cnnkern.compress.qmodel runs a conv + max
    pool pair with it."""
    arrays, epilogue = _layer(x, w, bias, multiplier, shift, x_zero, y_zero, relu)
    return _cpp.conv2d_q8_pool_forward(
        *arrays,
        **epilogue,
        stride=tuple(stride),
        padding=tuple(padding),
        dilation=tuple(dilation),
        groups=int(groups),
        pool=tuple(pool),
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
    arrays, epilogue = _layer(x, w, bias, multiplier, shift, x_zero, y_zero, relu)
    return _cpp.dense_q8_forward(*arrays, **epilogue)


def quantize_input(x: np.ndarray, scale: float, zero: int) -> np.ndarray:
    """:func:`cnnkern.compress.qparams.quantize_input` of finite inputs; in C++ for float32 (equal)."""
    if x.dtype != np.float32:
        from ..compress.qparams import quantize_input as spec_input

        return spec_input(x, scale, zero)
    return _cpp.quantize_input_q8(_c(x), float(scale), int(zero))


def dense_q8_acc(x: np.ndarray, w: np.ndarray, bias: np.ndarray, *, x_zero: int) -> np.ndarray:
    spec.check_dtypes(x, w, bias=bias)
    return _cpp.dense_q8_acc(_c(x), _c(w), _c(bias), x_zero=int(x_zero))


def maxpool2d_q8_forward(
    x: np.ndarray,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
) -> np.ndarray:
    spec.check_maxpool_q8(x, kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode)
    return _cpp.maxpool2d_q8_forward(
        _c(x),
        kernel_size=tuple(kernel_size),
        stride=tuple(stride),
        padding=tuple(padding),
        ceil_mode=bool(ceil_mode),
    )
