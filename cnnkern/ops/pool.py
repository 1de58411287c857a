"""Max and average pooling at the front door: x (N,C,H,W) -> y (N,C,P,Q).

An empty batch (N = 0) is answered here without a kernel (empty outputs, as PyTorch); every call's outputs
and its padded input are estimated against check.memory_limit() before anything is allocated.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from numpy.typing import DTypeLike

from .. import shapes
from ..backends import Backend, resolve
from . import check

if TYPE_CHECKING:
    from .._typing import BackendArray
    from .check import BackendLike, IntPair


def _geometry(
    x_shape: Sequence[int],
    kernel_size: IntPair,
    stride: IntPair | None,
    padding: IntPair,
    dilation: IntPair,
    ceil_mode: bool,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int], bool, tuple[int, int]]:
    k = check.pair("kernel_size", kernel_size, minimum=1)
    s = k if stride is None else check.pair("stride", stride, minimum=1)
    p = check.pair("padding", padding, minimum=0)
    d = check.pair("dilation", dilation, minimum=1)
    ceil_mode = check.flag("ceil_mode", ceil_mode)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"padding {p} must be at most half the kernel size {k}")
    h, w = x_shape[2], x_shape[3]
    out = (
        shapes.pool_out(h, k[0], s[0], p[0], d[0], ceil_mode),
        shapes.pool_out(w, k[1], s[1], p[1], d[1], ceil_mode),
    )
    if out[0] < 1 or out[1] < 1:
        raise ValueError(
            f"pooling output would be empty: input {h}x{w}, kernel_size {k}, stride {s}, "
            f"padding {p}, dilation {d} give {out[0]}x{out[1]}"
        )
    for axis, length in ((0, h), (1, w)):
        o = _window_in_padding(length, k[axis], s[axis], p[axis], d[axis], out[axis])
        if o is not None:
            raise ValueError(
                f"pooling window {o} along {'HW'[axis]} lies entirely in the padding (input "
                f"{h}x{w}, kernel_size {k}, stride {s}, padding {p}, dilation {d})"
            )
    return k, s, p, d, ceil_mode, out


@functools.lru_cache(maxsize=512)
def _window_in_padding(length: int, k: int, s: int, p: int, d: int, out: int) -> int | None:
    """The first of ``out`` windows along one dim (all ints, checked) with no tap inside [0, length), or
    None. Cached: a training loop asks for the same few geometries every step. Each window is tested in O(1)
    (its first tap at or after 0), so a kernel size near 2**31 costs no more than 2."""
    for o in range(out):
        start = o * s - p
        first = max(0, -(start // d))  # index of the first tap >= 0: ceil(-start / d) when start < 0
        if first < k and start + first * d < length:
            continue
        return o
    return None


def _budget(
    x_shape: Sequence[int],
    dtype: np.dtype,
    padding: Sequence[int],
    out: Sequence[int],
    what: Callable[[], str],
    argmax: bool = True,
) -> None:
    """Refuse a pooling call whose output (and int64 argmax), and padded input, exceed the memory limit."""
    n, c, h, w = x_shape
    y = n * c * out[0] * out[1]
    padded = n * c * (h + 2 * padding[0]) * (w + 2 * padding[1])
    total = (y + padded) * dtype.itemsize + (8 * y if argmax else 0)
    check.allocation(total, lambda: f"{what()} with padding {tuple(padding)} (output {tuple(out)})")


def _empty(be: Backend, shape: Sequence[int], dtype: DTypeLike) -> BackendArray:
    return __import__(be.array_module).empty(shape, dtype)


def maxpool2d_forward(
    x: BackendArray,
    *,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_argmax: bool = True,
    backend: BackendLike = None,
) -> tuple[BackendArray, BackendArray] | BackendArray:
    """Max pooling; returns (y, argmax) with argmax int64, a flat index into the unpadded H*W plane, or y
    alone with ``return_argmax=False`` (inference: the argmax is not written where the backend can skip
    it)."""
    be = resolve(backend)
    x = check.array("x", x, be, ndim=4, batch=True)
    k, s, p, d, ceil_mode, out = _geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    kw: dict[str, Any] = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil_mode)
    need_argmax = check.flag("return_argmax", return_argmax)
    what = lambda: f"maxpool2d_forward on x {x.shape} with kernel_size {k}"  # noqa: E731
    _budget(x.shape, x.dtype, p, out, what, argmax=need_argmax)
    if x.shape[0] == 0:
        y = _empty(be, x.shape[:2] + out, x.dtype)
        return (y, _empty(be, y.shape, "int64")) if need_argmax else y
    if not need_argmax:
        return be.maxpool2d_values_forward(x, **kw)
    return be.maxpool2d_forward(x, **kw)


def _argmax_checked(
    dy: BackendArray, argmax: BackendArray, x_shape: Sequence[int], be: Backend, shape_name: str = "x_shape"
) -> BackendArray:
    """argmax validated against dy and x_shape (int64, the shape of dy, inside the H*W plane), contiguous."""
    cls = check.array_types(be)
    if not isinstance(argmax, cls):
        raise TypeError(f"argmax must be a {cls.__module__}.ndarray, got {type(argmax).__name__}")
    if argmax.dtype.kind != "i" or argmax.dtype.itemsize != 8:
        raise TypeError(f"argmax must be int64 (as maxpool2d_forward returns it), got {argmax.dtype.name}")
    argmax = check.base_class("argmax", argmax, cls, be)
    check.shape_is("argmax", argmax, dy.shape, "the shape of dy")
    if tuple(dy.shape[:2]) != x_shape[:2]:
        raise ValueError(f"dy {tuple(dy.shape)} and {shape_name} {x_shape} must agree on (N, C)")
    # int64 in the other byte order, strided or misaligned: a layout, converted like the floats
    argmax = check.int64_array("argmax", argmax)
    if argmax.size == 0:
        return argmax
    if not be.checks_argmax:  # else the kernel checks every index as it scatters (one pass less)
        plane = x_shape[2] * x_shape[3]
        lo, hi = int(argmax.min()), int(argmax.max())
        if lo < 0 or hi >= plane:
            raise ValueError(
                f"argmax holds {lo if lo < 0 else hi}, outside the H*W plane [0, {plane}) of "
                f"{shape_name} {x_shape}"
            )
    return argmax


def maxpool2d_backward(
    dy: BackendArray, argmax: BackendArray, x_shape: Sequence[int], *, backend: BackendLike = None
) -> BackendArray:
    """Scatter dy to the argmax positions (accumulating where windows overlap); returns dx of x_shape."""
    be = resolve(backend)
    x_shape = check.x_shape("x_shape", x_shape)
    dy = check.array("dy", dy, be, ndim=4, batch=True)
    argmax = _argmax_checked(dy, argmax, x_shape, be)
    check.allocation(check.nbytes(x_shape, dy.dtype), lambda: f"maxpool2d_backward's dx of x_shape {x_shape}")
    if x_shape[0] == 0:
        return _empty(be, x_shape, dy.dtype)
    return be.maxpool2d_backward(dy, argmax, x_shape)


def maxpool2d_act_backward(
    dy: BackendArray,
    argmax: BackendArray,
    a: BackendArray,
    activation: str,
    *,
    alpha: float = 0.01,
    backend: BackendLike = None,
) -> BackendArray:
    """Gradient with respect to z of ``maxpool2d(act(z))``, given the activation's output ``a = act(z)``
    (the pool's input, (N,C,H,W)): ``activation_backward(maxpool2d_backward(dy, argmax, a.shape), a,
    activation)`` in one pass (fused on the cpp backend; a composition of those two kernels elsewhere)."""
    be = resolve(backend)
    alpha = check.activation_kind(activation, alpha, allow_none=False)
    a = check.array("a", a, be, ndim=4, batch=True)
    dy = check.array("dy", dy, be, ndim=4, dtype=a.dtype, batch=True)
    x_shape = tuple(int(d) for d in a.shape)
    argmax = _argmax_checked(dy, argmax, x_shape, be, shape_name="a")
    if x_shape[0] == 0:
        return _empty(be, x_shape, a.dtype)
    return be.maxpool2d_act_backward(dy, argmax, x_shape, a, activation, alpha=alpha)


def avgpool2d_forward(
    x: BackendArray,
    *,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    backend: BackendLike = None,
) -> BackendArray:
    """Average pooling, PyTorch's divisor rules (count_include_pad; the ceil_mode overhang never counts)."""
    be = resolve(backend)
    x = check.array("x", x, be, ndim=4, batch=True)
    k, s, p, _, ceil_mode, out = _geometry(x.shape, kernel_size, stride, padding, 1, ceil_mode)
    what = lambda: f"avgpool2d_forward on x {x.shape} with kernel_size {k}"  # noqa: E731
    _budget(x.shape, x.dtype, p, out, what, argmax=False)
    if x.shape[0] == 0:
        return _empty(be, x.shape[:2] + out, x.dtype)
    return be.avgpool2d_forward(
        x,
        kernel_size=k,
        stride=s,
        padding=p,
        ceil_mode=ceil_mode,
        count_include_pad=check.flag("count_include_pad", count_include_pad),
    )


def avgpool2d_backward(
    dy: BackendArray,
    x_shape: Sequence[int],
    *,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    backend: BackendLike = None,
) -> BackendArray:
    """Gradient of avgpool2d_forward: each dy spread evenly (by the same divisor) over its window."""
    be = resolve(backend)
    x_shape = check.x_shape("x_shape", x_shape)
    dy = check.array("dy", dy, be, ndim=4, batch=True)
    k, s, p, _, ceil_mode, out = _geometry(x_shape, kernel_size, stride, padding, 1, ceil_mode)
    check.shape_is("dy", dy, x_shape[:2] + out, "the pooling output shape")
    what = lambda: f"avgpool2d_backward to x_shape {x_shape} with kernel_size {k}"  # noqa: E731
    _budget(x_shape, dy.dtype, p, (x_shape[2], x_shape[3]), what, argmax=False)
    if x_shape[0] == 0:
        return _empty(be, x_shape, dy.dtype)
    return be.avgpool2d_backward(
        dy,
        x_shape,
        kernel_size=k,
        stride=s,
        padding=p,
        ceil_mode=ceil_mode,
        count_include_pad=check.flag("count_include_pad", count_include_pad),
    )
