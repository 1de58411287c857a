"""conv2d at the front door: x (N,C,H,W), w (K,C/groups,R,S), b (K,) -> y (N,K,P,Q).

An empty batch (N = 0) is answered here, as PyTorch does, without a kernel: an empty y, an empty dx and zero
dw, db. Before a call allocates, its outputs and workspaces are estimated against check.memory_limit().
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from .. import shapes
from ..backends import Backend, resolve
from . import check

if TYPE_CHECKING:
    from .._typing import BackendArray
    from .check import BackendLike, IntPair


def _geometry(
    x: BackendArray, w: BackendArray, stride: IntPair, padding: IntPair | str, dilation: IntPair, groups: int
) -> tuple[tuple[int, int], tuple[int, int, int, int], tuple[int, int], int, tuple[int, int]]:
    """Check the conv arguments against x and w; return (stride, padding4, dilation, groups, (P, Q))."""
    stride = check.pair("stride", stride, minimum=1)
    dilation = check.pair("dilation", dilation, minimum=1)
    groups = check.integer("groups", groups, minimum=1)
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    if c % groups or k % groups:
        raise ValueError(
            f"groups={groups} must divide both input channels C={c} (x {tuple(x.shape)}) "
            f"and output channels K={k} (w {tuple(w.shape)})"
        )
    if cg != c // groups:
        raise ValueError(
            f"w must have shape (K, C/groups, R, S) = ({k}, {c // groups}, R, S) for x {tuple(x.shape)} "
            f"and groups={groups}, got {tuple(w.shape)}"
        )
    if isinstance(padding, str):
        if padding == "valid":
            pad = (0, 0, 0, 0)
        elif padding == "same":
            pad = shapes.same_padding(h, r, stride[0], dilation[0]) + shapes.same_padding(
                wd, s, stride[1], dilation[1]
            )
        else:
            raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    else:
        ph, pw = check.pair("padding", padding, minimum=0)
        pad = (ph, ph, pw, pw)
    p, q = shapes.conv_out_hw(x.shape, w.shape, stride, pad, dilation)
    if p < 1 or q < 1:
        raise ValueError(
            f"conv2d output would be empty: x {tuple(x.shape)}, kernel {r}x{s}, stride {stride}, "
            f"padding {pad}, dilation {dilation} give {p}x{q}"
        )
    return stride, pad, dilation, groups, (p, q)


def _xp(be: Backend) -> ModuleType:
    return __import__(be.array_module)


def _budget(
    x: BackendArray,
    w: BackendArray,
    pad: tuple[int, int, int, int],
    pq: tuple[int, int],
    backward: bool = False,
) -> None:
    """Estimated bytes of a conv call: y (or dx and dw), the zero-padded input (the reference's and the
    direct kernels' workspace) and one image's im2col matrix (C/g·R·S, P·Q), refused above the memory limit
    with the arguments that set them. Python ints: the product never wraps."""
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    p, q = pq
    padded = n * c * (h + pad[0] + pad[1]) * (wd + pad[2] + pad[3])
    elements = n * k * p * q + cg * r * s * p * q + padded
    if backward:  # dx, its padded form, dw
        elements += padded + n * c * h * wd + w.size
    check.allocation(
        elements * x.itemsize,
        lambda: (
            f"conv2d{'_backward' if backward else ''} on x {tuple(x.shape)}, w {tuple(w.shape)} with "
            f"padding {pad} (output {(n, k) + pq})"
        ),
    )


def _forward_args(
    be: Backend,
    x: BackendArray,
    w: BackendArray,
    b: BackendArray | None,
    stride: IntPair,
    padding: IntPair | str,
    dilation: IntPair,
    groups: int,
) -> tuple[
    BackendArray,
    BackendArray,
    BackendArray | None,
    tuple[int, int],
    tuple[int, int, int, int],
    tuple[int, int],
    int,
    tuple[int, int],
]:
    """The checks shared by conv2d_forward and its fused variant.

    Returns (x, w, b, stride, padding4, dilation, groups, (P, Q))."""
    x = check.array("x", x, be, ndim=4, batch=True)
    w = check.array("w", w, be, ndim=4, dtype=x.dtype)
    stride, pad, dilation, groups, out = _geometry(x, w, stride, padding, dilation, groups)
    b = check.optional_array("b", b, be, ndim=1, dtype=x.dtype)
    if b is not None:
        check.shape_is("b", b, (w.shape[0],), "one bias per output channel")
    _budget(x, w, pad, out)
    return x, w, b, stride, pad, dilation, groups, out


def conv2d_forward(
    x: BackendArray,
    w: BackendArray,
    b: BackendArray | None = None,
    *,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    backend: BackendLike = None,
) -> BackendArray:
    """Cross-correlation with zero padding, PyTorch's conv2d. Returns y (N,K,P,Q).

    stride, dilation: int or (sh, sw); padding: int, (ph, pw), 'valid' or 'same' ('same' with stride > 1 pads
    like TensorFlow so that P = ceil(H/sh)).
    """
    be = resolve(backend)
    x, w, b, stride, pad, dilation, groups, pq = _forward_args(be, x, w, b, stride, padding, dilation, groups)
    if x.shape[0] == 0:
        return _xp(be).empty((0, w.shape[0]) + pq, x.dtype)
    return be.conv2d_forward(x, w, b, stride=stride, padding=pad, dilation=dilation, groups=groups)


def conv2d_backward(
    dy: BackendArray,
    x: BackendArray,
    w: BackendArray,
    *,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    need_dx: bool = True,
    need_dw: bool = True,
    need_db: bool = True,
    backend: BackendLike = None,
) -> tuple[BackendArray | None, BackendArray | None, BackendArray | None]:
    """Gradients of conv2d_forward: (dx, dw, db), None where not asked for. dy is dL/dy (N,K,P,Q)."""
    be = resolve(backend)
    x = check.array("x", x, be, ndim=4, batch=True)
    w = check.array("w", w, be, ndim=4, dtype=x.dtype)
    dy = check.array("dy", dy, be, ndim=4, dtype=x.dtype, batch=True)
    stride, pad, dilation, groups, (p, q) = _geometry(x, w, stride, padding, dilation, groups)
    check.shape_is("dy", dy, (x.shape[0], w.shape[0], p, q), "the conv2d output shape")
    need = (check.flag("need_dx", need_dx), check.flag("need_dw", need_dw), check.flag("need_db", need_db))
    _budget(x, w, pad, (p, q), backward=True)
    if x.shape[0] == 0:
        return empty_batch_grads(be, x, w, *need)
    return be.conv2d_backward(
        dy,
        x,
        w,
        stride=stride,
        padding=pad,
        dilation=dilation,
        groups=groups,
        need_dx=need[0],
        need_dw=need[1],
        need_db=need[2],
    )


def empty_batch_grads(
    be: Backend, x: BackendArray, w: BackendArray, need_dx: bool, need_dw: bool, need_db: bool
) -> tuple[BackendArray | None, BackendArray | None, BackendArray | None]:
    """(dx, dw, db) of a conv (or dense) backward over an empty batch: dx empty, dw and db zero (nothing
    to sum), None where not asked for, as PyTorch gives them."""
    xp = _xp(be)
    return (
        xp.empty(x.shape, x.dtype) if need_dx else None,
        xp.zeros(w.shape, x.dtype) if need_dw else None,
        xp.zeros(w.shape[:1], x.dtype) if need_db else None,
    )


def conv2d_bias_act_forward(
    x: BackendArray,
    w: BackendArray,
    b: BackendArray | None = None,
    *,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    activation: str | None = None,
    alpha: float = 0.01,
    backend: BackendLike = None,
) -> BackendArray:
    """``activation_forward(conv2d_forward(x, w, b, ...), activation)`` as one fused kernel where the backend
    has one (bias and activation applied while the output tile is in cache). activation: None or a kind of
    activation_forward. The backward is the unfused pair: activation_backward from y, then conv2d_backward."""
    be = resolve(backend)
    x, w, b, stride, pad, dilation, groups, pq = _forward_args(be, x, w, b, stride, padding, dilation, groups)
    alpha = check.activation_kind(activation, alpha)
    if x.shape[0] == 0:
        return _xp(be).empty((0, w.shape[0]) + pq, x.dtype)
    return be.conv2d_bias_act_forward(
        x,
        w,
        b,
        stride=stride,
        padding=pad,
        dilation=dilation,
        groups=groups,
        activation=activation,
        alpha=alpha,
    )
