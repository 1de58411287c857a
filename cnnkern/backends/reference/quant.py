"""The int8 inference kernels' specification (:mod:`cnnkern.compress`), exact integer arithmetic.

Number formats (every backend's quantized kernels give results EQUAL to these, bit for bit):

* activations: ``uint8`` holding 7-bit values ``[0, ACT_MAX]`` with a per-tensor ``zero`` point; the real
  value is ``scale * (q - zero)``. 7 bits, as fbgemm's ``reduce_range``: a pair of products
  ``127 * 127 * 2 = 32258`` fits int16, so AVX2's saturating ``vpmaddubsw`` is exact on every path;
* weights: ``int8`` in ``[-W_MAX, W_MAX]`` (symmetric, zero point 0), one scale per output channel;
* the accumulator: ``int32``, ``acc[k] = bias[k] + sum (x - x_zero) * w[k]`` over the receptive field, a
  padded cell holding ``x_zero`` (so it adds nothing); the reduction length is at most ``MAX_REDUCTION``
  and ``|bias| <= MAX_BIAS``, which keeps every partial sum inside int32 in any order;
* requantization (the fused epilogue): ``y = clamp(y_zero + ((acc * m[k] + 2**(s[k]-1)) >> s[k]), lo,
  ACT_MAX)`` in int64 (``>>`` floors: ties round up), ``m`` an int32 in ``{0} U [2**30, 2**31)``, ``s`` in
  ``[1, 62]``, ``lo = y_zero`` with ReLU, else 0;
* max pooling on the 7-bit codes (max commutes with the monotone dequantization), padding below every
  code;
* images are channels-last, (N, H, W, C), as the user's data: a pixel's channels are contiguous, which is
  what the kernels' im2col (whole channel runs per tap), epilogue (one pixel's output channels) and max pool
  (channel vectors) want. Weights keep the canonical (K, C/groups, R, S).

The reference computes the reductions with a float64 matrix product: every product and partial sum is an
integer below 2**31 < 2**53, so float64 holds them exactly whatever the summation order.

The kernels have the table's signatures (:mod:`cnnkern.kernels.quant`) and expect checked arguments: the
format's rules, which every backend shares, are checked once by the front door,
:class:`cnnkern.compress.kernels.QuantKernels` (``cnnkern.compress.kernels.get("reference")``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ... import shapes

ACT_MAX = 127
W_MAX = 127
MAX_REDUCTION = 1 << 16
MAX_BIAS = 1 << 30


def conv_q8_shape(
    x: np.ndarray, w: np.ndarray, stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int]
) -> tuple[int, int, int, int]:
    """The quantized convolution's output shape (N, P, Q, K): x (N,H,W,C), w (K,C/groups,R,S)."""
    n, h, wd, _ = x.shape
    k, _, r, s = w.shape
    p = shapes.conv_out(h, r, stride[0], padding[0], padding[1], dilation[0])
    q = shapes.conv_out(wd, s, stride[1], padding[2], padding[3], dilation[1])
    return n, p, q, k


def maxpool_q8_shape(
    x: np.ndarray, kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int], ceil_mode: bool
) -> tuple[int, int, int, int]:
    """The quantized max pool's output shape (N, P, Q, C): x (N,H,W,C)."""
    n, h, w, c = x.shape
    p = shapes.pool_out(h, kernel_size[0], stride[0], padding[0], 1, ceil_mode)
    q = shapes.pool_out(w, kernel_size[1], stride[1], padding[1], 1, ceil_mode)
    return n, p, q, c


def requantize(
    acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, y_zero: int, relu: bool, axis: int
) -> np.ndarray:
    """The epilogue: int32 accumulators -> 7-bit codes, per channel along ``axis``."""
    shape = [1] * acc.ndim
    shape[axis] = acc.shape[axis]
    m, s = multiplier.astype(np.int64).reshape(shape), shift.astype(np.int64).reshape(shape)
    y = y_zero + ((acc.astype(np.int64) * m + (np.int64(1) << (s - 1))) >> s)
    return np.clip(y, y_zero if relu else 0, ACT_MAX).astype(np.uint8)


def _matmul_exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer matrix product (exact: see the module docstring) as int64."""
    return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


def conv2d_q8_acc(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    *,
    x_zero: int,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """The int32 accumulators (N,P,Q,K) of the quantized convolution: x (N,H,W,C) uint8, w (K,C/g,R,S)."""
    n, p, q, kk = conv_q8_shape(x, w, stride, padding, dilation)
    x = x.transpose(0, 3, 1, 2)  # computed on NCHW views, below
    c = x.shape[1]
    _, cg, r, s = w.shape
    t, b, le, ri = padding
    xs = np.pad(x.astype(np.int64) - x_zero, ((0, 0), (0, 0), (t, b), (le, ri)))
    # cols[n, c, i, j, p, q] = the tap (i, j) of output (p, q)
    cols = np.empty((n, c, r, s, p, q), np.int64)
    for i in range(r):
        for j in range(s):
            h0, w0 = i * dilation[0], j * dilation[1]
            cols[:, :, i, j] = xs[
                :,
                :,
                h0 : h0 + stride[0] * (p - 1) + 1 : stride[0],
                w0 : w0 + stride[1] * (q - 1) + 1 : stride[1],
            ]
    acc = np.empty((n, kk, p * q), np.int64)
    kg = kk // groups
    for g in range(groups):
        a = cols[:, g * cg : (g + 1) * cg].reshape(n, cg * r * s, p * q)
        acc[:, g * kg : (g + 1) * kg] = _matmul_exact(w[g * kg : (g + 1) * kg].reshape(kg, -1), a)
    return (acc + bias.reshape(1, kk, 1)).reshape(n, kk, p, q).transpose(0, 2, 3, 1).astype(np.int32)


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
    """Quantized convolution with the fused epilogue: uint8 (N,P,Q,K) 7-bit codes."""
    acc = conv2d_q8_acc(
        x, w, bias, x_zero=x_zero, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    return requantize(acc, multiplier, shift, y_zero, relu, axis=3)


def dense_q8_acc(x: np.ndarray, w: np.ndarray, bias: np.ndarray, *, x_zero: int) -> np.ndarray:
    """The int32 accumulators (N,out) of the quantized dense layer: x (N,in) uint8, w (out,in) int8."""
    acc = _matmul_exact(x.astype(np.int64) - x_zero, w.T) + bias
    return acc.astype(np.int32)


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
    """Quantized dense layer with the fused epilogue: uint8 (N,out) 7-bit codes."""
    return requantize(dense_q8_acc(x, w, bias, x_zero=x_zero), multiplier, shift, y_zero, relu, axis=1)


def maxpool2d_q8_forward(
    x: np.ndarray,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
) -> np.ndarray:
    """Max pooling of uint8 codes (N,H,W,C) -> (N,P,Q,C); padding ``(ph, pw)``, each <= k // 2."""
    n, p, q, c = maxpool_q8_shape(x, kernel_size, stride, padding, ceil_mode)
    x = x.transpose(0, 3, 1, 2)  # computed on an NCHW view, below
    h, w = x.shape[2:]
    need_h = (p - 1) * stride[0] + kernel_size[0]
    need_w = (q - 1) * stride[1] + kernel_size[1]
    xp = np.pad(
        x,
        (
            (0, 0),
            (0, 0),
            (padding[0], max(need_h - h - padding[0], 0)),
            (padding[1], max(need_w - w - padding[1], 0)),
        ),
    )
    y = np.zeros((n, c, p, q), np.uint8)
    for i in range(kernel_size[0]):
        for j in range(kernel_size[1]):
            tap = xp[
                :, :, i : i + stride[0] * (p - 1) + 1 : stride[0], j : j + stride[1] * (q - 1) + 1 : stride[1]
            ]
            np.maximum(y, tap, out=y)
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1))


def conv_then_pool(conv: Callable[..., Any] | None, maxpool: Callable[..., Any] | None) -> Callable[..., Any]:
    """conv2d_q8_pool_forward, with the table's signature, from a backend's conv and max pool (for the
    backends that do not fuse them): a function over those two, or with None for both a method calling
    ``self.conv2d_q8_forward`` and ``self.maxpool2d_q8_forward``."""
    from ...kernel_methods import call_args, function
    from ...kernels import QUANT_TABLE

    kernel, conv_kernel = QUANT_TABLE["conv2d_q8_pool_forward"], QUANT_TABLE["conv2d_q8_forward"]
    owner = "self." if conv is None else "_"
    conv_call = f"{owner}conv2d_q8_forward({call_args(conv_kernel, keywords=True)})"
    pool_kw = "kernel_size=pool, stride=pool, padding=(0, 0), ceil_mode=False"
    body = f"return {owner}maxpool2d_q8_forward({conv_call}, {pool_kw})"
    names = {"_conv2d_q8_forward": conv, "_maxpool2d_q8_forward": maxpool}
    fn = function(kernel.name, kernel.signature(self_arg=conv is None), body, names)
    fn.__doc__ = (
        "conv2d_q8_forward, then the max pool of window = stride = ``pool`` (floor mode, no padding)."
    )
    return fn


conv2d_q8_pool_forward = conv_then_pool(conv2d_q8_forward, maxpool2d_q8_forward)


def quantize_input_q8(x: np.ndarray, *, scale: float, zero: int) -> np.ndarray:
    """Float inputs -> 7-bit codes: clip(rint(x / scale) + zero, 0, 127), in float64 (rint: half to even)."""
    return np.clip(np.rint(np.asarray(x, np.float64) / scale) + zero, 0, ACT_MAX).astype(np.uint8)
