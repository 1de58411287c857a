"""The convolution ops: ``cnnkern::conv2d`` (convolution, bias and an optional activation, cnnkern's fused
conv2d_bias_act kernel) and ``cnnkern::conv2d_act_maxpool`` (convolution, bias, activation and max pooling in
one kernel), each with a backward op, a fake (shape) implementation and its autograd formula.

Arguments arrive normalised by :mod:`cnnkern.torch.functional`: stride and dilation (h, w), padding (ph, pw)
or (top, bottom, left, right), activation None or one of cnnkern.kernels.ACTIVATIONS. Each call goes through
cnnkern's front door (:mod:`cnnkern.ops`), whose checks raise the errors that name argument and shape.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .. import ops, shapes
from ._bridge import arr_in, backend_for, grad_or_none, none_or, t_out
from ._eager import call, define, register_autograd

_CONV = "int[] stride, int[] padding, int[] dilation, int groups, str? activation, float alpha"
_POOL = "int[] pool_kernel, int[] pool_stride, int[] pool_padding, int[] pool_dilation, bool ceil_mode"
_NEED = "bool need_dx, bool need_dw, bool need_db"
_GRADS = "(Tensor, Tensor, Tensor)"


def pad4(padding: list[int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) from (ph, pw) or the 4-tuple itself."""
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    if len(padding) == 4:
        return (padding[0], padding[1], padding[2], padding[3])
    raise ValueError(f"padding must hold 2 or 4 values, got {list(padding)}")


def _front_padding(x: Tensor, w: Tensor, padding: list[int], stride: list[int], dilation: list[int]) -> Any:
    """The front door's padding: (ph, pw) when symmetric, 'same' for the asymmetric padding 'same' gives."""
    t, b, left, r = pad4(padding)
    if t == b and left == r:
        return (t, left)
    same = shapes.same_padding(x.shape[2], w.shape[2], stride[0], dilation[0]) + shapes.same_padding(
        x.shape[3], w.shape[3], stride[1], dilation[1]
    )
    if (t, b, left, r) == same:
        return "same"
    raise ValueError(f"asymmetric padding {(t, b, left, r)} is only supported as padding='same' ({same})")


def _conv_kw(
    x: Tensor, w: Tensor, stride: list[int], padding: list[int], dilation: list[int], groups: int
) -> Any:
    return dict(
        stride=tuple(stride),
        padding=_front_padding(x, w, padding, stride, dilation),
        dilation=tuple(dilation),
        groups=groups,
    )


def conv_shape(x: Tensor, w: Tensor, stride: list[int], padding: list[int], dilation: list[int]) -> list[Any]:
    p, q = shapes.conv_out_hw(x.shape, w.shape, stride, pad4(padding), dilation)
    return [x.shape[0], w.shape[0], p, q]


# ---- cnnkern::conv2d ---------------------------------------------------------------------------------------


@define("cnnkern::conv2d", schema=f"(Tensor x, Tensor w, Tensor? b, {_CONV}) -> Tensor")
def conv2d(
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    activation: str | None,
    alpha: float,
) -> Tensor:
    kw = _conv_kw(x, w, stride, padding, dilation, groups)
    be = backend_for(x)
    y = ops.conv2d_bias_act_forward(
        arr_in(x), arr_in(w), arr_in(b), **kw, activation=activation, alpha=alpha, backend=be
    )
    return t_out(y)


@conv2d.register_fake
def _(x, w, b, stride, padding, dilation, groups, activation, alpha):  # type: ignore[no-untyped-def]
    return x.new_empty(conv_shape(x, w, stride, padding, dilation))


@define(
    "cnnkern::conv2d_backward",
    schema=f"(Tensor dy, Tensor x, Tensor w, Tensor y, {_CONV}, {_NEED}) -> (Tensor, Tensor, Tensor)",
)
def conv2d_backward(
    dy: Tensor,
    x: Tensor,
    w: Tensor,
    y: Tensor,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    activation: str | None,
    alpha: float,
    need_dx: bool,
    need_dw: bool,
    need_db: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients (dx, dw, db) of conv2d from dy and its output y (read only with an activation); an empty
    tensor for each one not asked for."""
    kw = _conv_kw(x, w, stride, padding, dilation, groups)
    be = backend_for(x)
    g = arr_in(dy)
    if activation is not None:
        g = ops.activation_backward(g, arr_in(y), activation, alpha=alpha, backend=be)
    grads = ops.conv2d_backward(
        g, arr_in(x), arr_in(w), **kw, need_dx=need_dx, need_dw=need_dw, need_db=need_db, backend=be
    )
    return _grads_out(grads, x)


def fake_grads(
    x: Tensor, w: Tensor, need_dx: bool, need_dw: bool, need_db: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """The shapes of (dx, dw, db), empty where not asked for."""
    empty = [0]
    return (
        x.new_empty(list(x.shape) if need_dx else empty),
        x.new_empty(list(w.shape) if need_dw else empty),
        x.new_empty([w.shape[0]] if need_db else empty),
    )


@conv2d_backward.register_fake
def _(dy, x, w, y, stride, padding, dilation, groups, activation, alpha, need_dx, need_dw, need_db):  # type: ignore[no-untyped-def]
    return fake_grads(x, w, need_dx, need_dw, need_db)


def _conv2d_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, w, b, *conf = inputs
    ctx.save_for_backward(x, w, output if conf[4] is not None else None)
    ctx.conf, ctx.has_b = conf, b is not None


def _grads_out(grads: tuple[Any, Any, Any], like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A backward op's (dx, dw, db) from the front door's, an empty tensor for each one not asked for."""
    return none_or(grads[0], like), none_or(grads[1], like), none_or(grads[2], like)


def _grads_in(ctx: Any, backward_op: Any, *args: Tensor, others: int) -> tuple[Any, ...]:
    """Autograd's gradients from ``backward_op(*args, *ctx.conf, need_dx, need_dw, need_db)``: (dx, dw, db),
    None where not needed, then None for the ``others`` non-tensor inputs."""
    need = ctx.needs_input_grad
    nb = need[2] and ctx.has_b
    dx, dw, db = call(backward_op, *args, *ctx.conf, need[0], need[1], nb)
    return (grad_or_none(dx, need[0]), grad_or_none(dw, need[1]), grad_or_none(db, nb)) + (None,) * others


def _conv2d_grad(ctx: Any, dy: Tensor) -> tuple[Any, ...]:
    x, w, y = ctx.saved_tensors
    y = dy if y is None else y  # read only with an activation
    return _grads_in(ctx, conv2d_backward, dy, x, w, y, others=6)


register_autograd(conv2d, _conv2d_grad, setup_context=_conv2d_setup)


# ---- cnnkern::conv2d_act_maxpool ---------------------------------------------------------------------------


def _pool_kw(
    pool_kernel: list[int],
    pool_stride: list[int],
    pool_padding: list[int],
    pool_dilation: list[int],
    ceil_mode: bool,
) -> dict[str, Any]:
    return dict(
        pool_size=tuple(pool_kernel),
        pool_stride=tuple(pool_stride),
        pool_padding=tuple(pool_padding),
        pool_dilation=tuple(pool_dilation),
        ceil_mode=ceil_mode,
    )


@define(
    "cnnkern::conv2d_act_maxpool",
    schema=f"(Tensor x, Tensor w, Tensor? b, {_CONV}, {_POOL}, bool need_argmax=True) -> (Tensor, Tensor)",
)
def conv2d_act_maxpool(
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    activation: str | None,
    alpha: float,
    pool_kernel: list[int],
    pool_stride: list[int],
    pool_padding: list[int],
    pool_dilation: list[int],
    ceil_mode: bool,
    need_argmax: bool = True,
) -> tuple[Tensor, Tensor]:
    """(y, argmax): max pooling of act(conv(x, w) + b); argmax indexes the conv output's P*Q plane, an empty
    int64 tensor unless need_argmax (inference: the kernel then skips writing it)."""
    kw = _conv_kw(x, w, stride, padding, dilation, groups)
    pool = _pool_kw(pool_kernel, pool_stride, pool_padding, pool_dilation, ceil_mode)
    out = ops.conv2d_act_maxpool_forward(
        arr_in(x),
        arr_in(w),
        arr_in(b),
        **kw,
        activation=activation,
        alpha=alpha,
        **pool,
        return_argmax=need_argmax,
        backend=backend_for(x),
    )
    if need_argmax:
        return t_out(out[0]), t_out(out[1])
    return t_out(out), x.new_empty(0, dtype=torch.int64)


@conv2d_act_maxpool.register_fake
def _(
    x: Tensor,
    w: Tensor,
    b: Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    activation: str | None,
    alpha: float,
    pk: list[int],
    ps: list[int],
    pp: list[int],
    pd: list[int],
    ceil_mode: bool,
    need_argmax: bool = True,
) -> tuple[Tensor, Tensor]:
    n, k, p, q = conv_shape(x, w, stride, padding, dilation)
    out = [n, k] + [shapes.pool_out(z, pk[i], ps[i], pp[i], pd[i], ceil_mode) for i, z in enumerate((p, q))]
    return x.new_empty(out), x.new_empty(out if need_argmax else [0], dtype=torch.int64)


@define(
    "cnnkern::conv2d_act_maxpool_backward",
    schema=f"(Tensor dy, Tensor y, Tensor argmax, Tensor x, Tensor w, {_CONV}, {_NEED}) -> {_GRADS}",
)
def conv2d_act_maxpool_backward(
    dy: Tensor,
    y: Tensor,
    argmax: Tensor,
    x: Tensor,
    w: Tensor,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    activation: str | None,
    alpha: float,
    need_dx: bool,
    need_dw: bool,
    need_db: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    kw = _conv_kw(x, w, stride, padding, dilation, groups)
    grads = ops.conv2d_act_maxpool_backward(
        arr_in(dy),
        arr_in(y),
        arr_in(argmax),
        arr_in(x),
        arr_in(w),
        **kw,
        activation=activation,
        alpha=alpha,
        need_dx=need_dx,
        need_dw=need_dw,
        need_db=need_db,
        backend=backend_for(x),
    )
    return _grads_out(grads, x)


@conv2d_act_maxpool_backward.register_fake
def _(dy, y, argmax, x, w, stride, padding, dilation, groups, activation, alpha, need_dx, need_dw, need_db):  # type: ignore[no-untyped-def]
    return fake_grads(x, w, need_dx, need_dw, need_db)


def _cap_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    x, w, b, *conf = inputs
    ctx.save_for_backward(x, w, output[0], output[1])
    ctx.conf, ctx.has_b = conf[:6], b is not None
    ctx.has_argmax = len(conf) < 12 or conf[11]
    ctx.mark_non_differentiable(output[1])


def _cap_grad(ctx: Any, dy: Tensor, _dargmax: Any) -> tuple[Any, ...]:
    if not ctx.has_argmax:
        raise RuntimeError("cnnkern::conv2d_act_maxpool ran with need_argmax=False: it has no gradient")
    x, w, y, argmax = ctx.saved_tensors
    return _grads_in(ctx, conv2d_act_maxpool_backward, dy, y, argmax, x, w, others=12)


register_autograd(conv2d_act_maxpool, _cap_grad, setup_context=_cap_setup)
