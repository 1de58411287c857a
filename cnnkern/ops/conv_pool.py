"""conv2d + bias + activation followed by max pooling, as one fused kernel pair at the front door.

The pair the model layer runs for ``Conv2D(activation=...)`` directly followed by ``MaxPooling2D``: on the cpp
and numba backends the first layer of an image CNN (one input channel) keeps each image's conv output in
cache, so the full-resolution activations are never written to memory, forward or backward. Elsewhere (and
for other geometries) it is the composition of the unfused kernels of the same backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backends import resolve
from . import check

if TYPE_CHECKING:
    from .._typing import BackendArray
    from .check import BackendLike, IntPair
from . import conv as conv_ops
from . import pool as pool_ops


def conv2d_act_maxpool_forward(
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
    pool_size: IntPair,
    pool_stride: IntPair | None = None,
    pool_padding: IntPair = 0,
    pool_dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_argmax: bool = True,
    backend: BackendLike = None,
) -> tuple[BackendArray, BackendArray] | BackendArray:
    """``maxpool2d_forward(conv2d_bias_act_forward(x, w, b, ...), kernel_size=pool_size, stride=pool_stride,
    ...)``: returns (y, argmax), argmax int64 (N,K,P',Q') a flat index into the P*Q plane of the conv output
    (what conv2d_act_maxpool_backward takes), or y alone with ``return_argmax=False`` (inference).

    Conv arguments as conv2d_forward, activation None or a kind of activation_forward; pool arguments as
    maxpool2d_forward's kernel_size, stride (default: pool_size), padding, dilation and ceil_mode.
    """
    be = resolve(backend)
    x, w, b, stride, pad, dilation, groups, pq = conv_ops._forward_args(
        be, x, w, b, stride, padding, dilation, groups
    )
    alpha = check.activation_kind(activation, alpha)
    z_shape = (x.shape[0], w.shape[0]) + pq
    k, s, p, d, ceil_mode, out = pool_ops._geometry(
        z_shape, pool_size, pool_stride, pool_padding, pool_dilation, ceil_mode
    )
    need_argmax = check.flag("return_argmax", return_argmax)
    what = lambda: f"conv2d_act_maxpool_forward's pool on the conv output {z_shape}, pool_size {k}"  # noqa: E731
    pool_ops._budget(z_shape, x.dtype, p, out, what, argmax=need_argmax)
    if x.shape[0] == 0:  # an empty batch: empty outputs, no kernel (as PyTorch)
        xp = conv_ops._xp(be)
        y = xp.empty(z_shape[:2] + out, x.dtype)
        return (y, xp.empty(y.shape, "int64")) if need_argmax else y
    y, argmax = be.conv2d_act_maxpool_forward(
        x,
        w,
        b,
        stride=stride,
        padding=pad,
        dilation=dilation,
        groups=groups,
        activation=activation,
        alpha=alpha,
        pool_kernel=k,
        pool_stride=s,
        pool_padding=p,
        pool_dilation=d,
        pool_ceil_mode=ceil_mode,
        need_argmax=need_argmax,
    )
    return (y, argmax) if need_argmax else y


def conv2d_act_maxpool_backward(
    dy: BackendArray,
    y: BackendArray,
    argmax: BackendArray,
    x: BackendArray,
    w: BackendArray,
    *,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    activation: str | None = None,
    alpha: float = 0.01,
    need_dx: bool = True,
    need_dw: bool = True,
    need_db: bool = True,
    backend: BackendLike = None,
) -> tuple[BackendArray | None, BackendArray | None, BackendArray | None]:
    """Gradients (dx, dw, db) of conv2d_act_maxpool_forward (None where not asked for), from dy = dL/dy and
    the forward's y and argmax (all (N,K,P',Q')) and x, w with the forward's conv arguments and activation:
    ``conv2d_backward(maxpool2d_backward(activation_backward(dy, y, activation), argmax, z.shape), x, w)``.
    """
    be = resolve(backend)
    x = check.array("x", x, be, ndim=4, batch=True)
    w = check.array("w", w, be, ndim=4, dtype=x.dtype)
    dy = check.array("dy", dy, be, ndim=4, dtype=x.dtype, batch=True)
    y = check.array("y", y, be, ndim=4, dtype=x.dtype, batch=True)
    stride, pad, dilation, groups, (p, q) = conv_ops._geometry(x, w, stride, padding, dilation, groups)
    alpha = check.activation_kind(activation, alpha)
    check.shape_is("y", y, dy.shape, "the shape of dy: the pooled output of the forward")
    z_shape = (int(x.shape[0]), int(w.shape[0]), p, q)
    argmax = pool_ops._argmax_checked(dy, argmax, z_shape, be, shape_name="the conv output")
    need = (check.flag("need_dx", need_dx), check.flag("need_dw", need_dw), check.flag("need_db", need_db))
    conv_ops._budget(x, w, pad, (p, q), backward=True)
    if x.shape[0] == 0:
        return conv_ops.empty_batch_grads(be, x, w, *need)
    return be.conv2d_act_maxpool_backward(
        dy,
        y,
        argmax,
        x,
        w,
        stride=stride,
        padding=pad,
        dilation=dilation,
        groups=groups,
        activation=activation,
        alpha=alpha,
        need_dx=need[0],
        need_dw=need[1],
        need_db=need[2],
    )
