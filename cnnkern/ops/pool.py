"""Max and average pooling at the front door: x (N,C,H,W) -> y (N,C,P,Q)."""

import numpy as np

from .. import shapes
from ..backends import resolve
from . import check


def _geometry(x_shape, kernel_size, stride, padding, dilation, ceil_mode):
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
        for o in range(out[axis]):
            taps = range(o * s[axis] - p[axis], o * s[axis] - p[axis] + d[axis] * k[axis], d[axis])
            if not any(0 <= t < length for t in taps):
                raise ValueError(
                    f"pooling window {o} along {'HW'[axis]} lies entirely in the padding (input "
                    f"{h}x{w}, kernel_size {k}, stride {s}, padding {p}, dilation {d})"
                )
    return k, s, p, d, ceil_mode, out


def maxpool2d_forward(x, *, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, backend=None):
    """Max pooling; returns (y, argmax) with argmax int64, a flat index into the unpadded H*W plane."""
    be = resolve(backend)
    x = check.array("x", x, be, ndim=4)
    k, s, p, d, ceil_mode, _ = _geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return be.maxpool2d_forward(x, kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil_mode)


def maxpool2d_backward(dy, argmax, x_shape, *, backend=None):
    """Scatter dy to the argmax positions (accumulating where windows overlap); returns dx of x_shape."""
    be = resolve(backend)
    x_shape = check.x_shape("x_shape", x_shape)
    dy = check.array("dy", dy, be, ndim=4)
    cls = check.array_types(be)
    if not isinstance(argmax, cls):
        raise TypeError(f"argmax must be a {cls.__module__}.ndarray, got {type(argmax).__name__}")
    if argmax.dtype.kind != "i" or argmax.dtype.itemsize != 8:
        raise TypeError(f"argmax must be int64 (as maxpool2d_forward returns it), got {argmax.dtype.name}")
    if argmax.dtype != np.int64:  # int64 in the other byte order: a layout, converted like the strides
        argmax = argmax.astype(np.int64)
    check.shape_is("argmax", argmax, dy.shape, "the shape of dy")
    if tuple(dy.shape[:2]) != x_shape[:2]:
        raise ValueError(f"dy {tuple(dy.shape)} and x_shape {x_shape} must agree on (N, C)")
    plane = x_shape[2] * x_shape[3]
    lo, hi = int(argmax.min()), int(argmax.max())
    if lo < 0 or hi >= plane:
        raise ValueError(
            f"argmax holds {lo if lo < 0 else hi}, outside the H*W plane [0, {plane}) of x_shape {x_shape}"
        )
    argmax = argmax if argmax.flags.c_contiguous else argmax.copy()
    return be.maxpool2d_backward(dy, argmax, x_shape)


def avgpool2d_forward(
    x, *, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, backend=None
):
    """Average pooling, PyTorch's divisor rules (count_include_pad; the ceil_mode overhang never counts)."""
    be = resolve(backend)
    x = check.array("x", x, be, ndim=4)
    k, s, p, _, ceil_mode, _ = _geometry(x.shape, kernel_size, stride, padding, 1, ceil_mode)
    return be.avgpool2d_forward(
        x,
        kernel_size=k,
        stride=s,
        padding=p,
        ceil_mode=ceil_mode,
        count_include_pad=check.flag("count_include_pad", count_include_pad),
    )


def avgpool2d_backward(
    dy, x_shape, *, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, backend=None
):
    """Gradient of avgpool2d_forward: each dy spread evenly (by the same divisor) over its window."""
    be = resolve(backend)
    x_shape = check.x_shape("x_shape", x_shape)
    dy = check.array("dy", dy, be, ndim=4)
    k, s, p, _, ceil_mode, out = _geometry(x_shape, kernel_size, stride, padding, 1, ceil_mode)
    check.shape_is("dy", dy, x_shape[:2] + out, "the pooling output shape")
    return be.avgpool2d_backward(
        dy,
        x_shape,
        kernel_size=k,
        stride=s,
        padding=p,
        ceil_mode=ceil_mode,
        count_include_pad=check.flag("count_include_pad", count_include_pad),
    )
