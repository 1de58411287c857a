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
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ... import shapes

ACT_MAX = 127
W_MAX = 127
MAX_REDUCTION = 1 << 16
MAX_BIAS = 1 << 30


def check_dtypes(x: np.ndarray, w: np.ndarray, **int32: np.ndarray) -> None:
    """The dtypes: x uint8, w int8, the named arrays int32 (the checks that cost no scan: the cpp backend
    makes the others in C++)."""
    if x.dtype != np.uint8 or w.dtype != np.int8 or any(a.dtype != np.int32 for a in int32.values()):
        got = ", ".join(str(a.dtype) for a in (x, w, *int32.values()))
        raise TypeError(f"x, w must be uint8, int8 and {', '.join(int32)} int32, got {got}")


def _check_common(x: np.ndarray, w: np.ndarray, bias: np.ndarray, x_zero: int, reduction: int) -> None:
    check_dtypes(x, w, bias=bias)
    if x.size and int(x.max()) > ACT_MAX:
        raise ValueError(f"x holds {int(x.max())}: activations are 7-bit codes in [0, {ACT_MAX}]")
    if w.size and int(np.abs(w.astype(np.int16)).max()) > W_MAX:
        raise ValueError(f"w holds -128: weights are in [-{W_MAX}, {W_MAX}]")
    if bias.shape != (w.shape[0],):
        raise ValueError(f"bias must have shape ({w.shape[0]},), got {bias.shape}")
    if bias.size and int(np.abs(bias.astype(np.int64)).max()) > MAX_BIAS:
        raise ValueError(f"|bias| must be <= 2**30, got {int(np.abs(bias.astype(np.int64)).max())}")
    if not 0 <= x_zero <= ACT_MAX:
        raise ValueError(f"x_zero must be in [0, {ACT_MAX}], got {x_zero}")
    if reduction > MAX_REDUCTION:
        raise ValueError(f"the reduction length {reduction} exceeds {MAX_REDUCTION}")


def check_conv_q8(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    *,
    x_zero: int,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> tuple[int, int, int, int]:
    """The quantized convolution's argument checks (every backend's but cpp's, which makes them in C++);
    returns the output shape (N, P, Q, K)."""
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"x must be (N,H,W,C) and w (K,C/groups,R,S), got {x.shape}, {w.shape}")
    n, h, wd, c = x.shape
    k, cg, r, s = w.shape
    _check_common(x, w, bias, x_zero, cg * r * s)
    if c != cg * groups or k % groups:
        raise ValueError(f"x {x.shape} and w {w.shape} do not match groups={groups}")
    p = shapes.conv_out(h, r, stride[0], padding[0], padding[1], dilation[0])
    q = shapes.conv_out(wd, s, stride[1], padding[2], padding[3], dilation[1])
    return n, p, q, k


def check_dense_q8(x: np.ndarray, w: np.ndarray, bias: np.ndarray, *, x_zero: int) -> tuple[int, int]:
    """The quantized dense layer's argument checks; returns the output shape (N, out)."""
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"x (N,in) and w (out,in) do not match: {x.shape}, {w.shape}")
    _check_common(x, w, bias, x_zero, w.shape[1])
    return x.shape[0], w.shape[0]


def check_requant(multiplier: np.ndarray, shift: np.ndarray, y_zero: int, k: int) -> None:
    """The epilogue's constants for ``k`` output channels."""
    if multiplier.dtype != np.int32 or shift.dtype != np.int32 or multiplier.shape != (k,) != shift.shape:
        raise ValueError(f"multiplier and shift must be int32 of shape ({k},)")
    m = multiplier.astype(np.int64)
    s = shift.astype(np.int64)
    if np.any((m != 0) & ((m < 1 << 30) | (m >= 1 << 31))) or np.any((s < 1) | (s > 62)):
        raise ValueError("multiplier must be 0 or in [2**30, 2**31), shift in [1, 62]")
    if not 0 <= y_zero <= ACT_MAX:
        raise ValueError(f"y_zero must be in [0, {ACT_MAX}], got {y_zero}")


def check_maxpool_q8(
    x: np.ndarray,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
) -> tuple[int, int, int, int]:
    """The quantized max pool's argument checks; returns the output shape (N, P, Q, C)."""
    if x.dtype != np.uint8 or x.ndim != 4:
        raise TypeError(f"x must be uint8 (N,H,W,C), got {x.dtype} {x.shape}")
    n, h, w, c = x.shape
    p = shapes.pool_out(h, kernel_size[0], stride[0], padding[0], 1, ceil_mode)
    q = shapes.pool_out(w, kernel_size[1], stride[1], padding[1], 1, ceil_mode)
    return n, p, q, c


def requantize(
    acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, y_zero: int, relu: bool, axis: int
) -> np.ndarray:
    """The epilogue: int32 accumulators -> 7-bit codes, per channel along ``axis``."""
    k = acc.shape[axis]
    check_requant(multiplier, shift, y_zero, k)
    shape = [1] * acc.ndim
    shape[axis] = k
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
    n, p, q, kk = check_conv_q8(
        x, w, bias, x_zero=x_zero, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
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
    check_dense_q8(x, w, bias, x_zero=x_zero)
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
    n, p, q, c = check_maxpool_q8(
        x, kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode
    )
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
