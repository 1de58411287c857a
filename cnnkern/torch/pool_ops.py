"""The pooling ops: ``cnnkern::max_pool2d`` (values and the argmax, a flat index into the unpadded H*W plane
as torch's max_pool2d_with_indices) and ``cnnkern::avg_pool2d``, with backward ops, fake implementations and
autograd formulas. Arguments arrive normalised by :mod:`cnnkern.torch.functional`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .. import ops, shapes
from ._bridge import arr_in, backend_for, t_out
from ._eager import call, define, register_autograd


def pool_shape(
    x: Tensor, kernel: list[int], stride: list[int], padding: list[int], dilation: list[int], ceil_mode: bool
) -> list[Any]:
    hw = [
        shapes.pool_out(x.shape[2 + i], kernel[i], stride[i], padding[i], dilation[i], ceil_mode)
        for i in (0, 1)
    ]
    return [x.shape[0], x.shape[1]] + hw


# ---- cnnkern::max_pool2d -----------------------------------------------------------------------------------

_MAX = "int[] kernel_size, int[] stride, int[] padding, int[] dilation, bool ceil_mode"


@define("cnnkern::max_pool2d", schema=f"(Tensor x, {_MAX}) -> (Tensor, Tensor)")
def max_pool2d(
    x: Tensor,
    kernel_size: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    ceil_mode: bool,
) -> tuple[Tensor, Tensor]:
    y, argmax = ops.maxpool2d_forward(
        arr_in(x),
        kernel_size=tuple(kernel_size),
        stride=tuple(stride),
        padding=tuple(padding),
        dilation=tuple(dilation),
        ceil_mode=ceil_mode,
        backend=backend_for(x),
    )
    return t_out(y), t_out(argmax)


@max_pool2d.register_fake
def _(x, kernel_size, stride, padding, dilation, ceil_mode):  # type: ignore[no-untyped-def]
    out = pool_shape(x, kernel_size, stride, padding, dilation, ceil_mode)
    return x.new_empty(out), x.new_empty(out, dtype=torch.int64)


@define(
    "cnnkern::max_pool2d_backward",
    schema="(Tensor dy, Tensor argmax, SymInt[] x_shape) -> Tensor",
)
def max_pool2d_backward(dy: Tensor, argmax: Tensor, x_shape: list[int]) -> Tensor:
    dx = ops.maxpool2d_backward(arr_in(dy), arr_in(argmax), tuple(x_shape), backend=backend_for(dy))
    return t_out(dx)


@max_pool2d_backward.register_fake
def _(dy, argmax, x_shape):  # type: ignore[no-untyped-def]
    return dy.new_empty(x_shape)


def _max_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    ctx.save_for_backward(output[1])
    ctx.x_shape = inputs[0].shape
    ctx.mark_non_differentiable(output[1])


def _max_grad(ctx: Any, dy: Tensor, _dargmax: Any) -> tuple[Any, ...]:
    (argmax,) = ctx.saved_tensors
    return (call(max_pool2d_backward, dy, argmax, list(ctx.x_shape)),) + (None,) * 5


register_autograd(max_pool2d, _max_grad, setup_context=_max_setup)


# ---- cnnkern::avg_pool2d -----------------------------------------------------------------------------------

_AVG = "int[] kernel_size, int[] stride, int[] padding, bool ceil_mode, bool count_include_pad"


def _avg_kw(
    kernel_size: list[int], stride: list[int], padding: list[int], ceil_mode: bool, count_include_pad: bool
) -> dict[str, Any]:
    return dict(
        kernel_size=tuple(kernel_size),
        stride=tuple(stride),
        padding=tuple(padding),
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
    )


@define("cnnkern::avg_pool2d", schema=f"(Tensor x, {_AVG}) -> Tensor")
def avg_pool2d(
    x: Tensor,
    kernel_size: list[int],
    stride: list[int],
    padding: list[int],
    ceil_mode: bool,
    count_include_pad: bool,
) -> Tensor:
    kw = _avg_kw(kernel_size, stride, padding, ceil_mode, count_include_pad)
    return t_out(ops.avgpool2d_forward(arr_in(x), **kw, backend=backend_for(x)))


@avg_pool2d.register_fake
def _(x, kernel_size, stride, padding, ceil_mode, count_include_pad):  # type: ignore[no-untyped-def]
    return x.new_empty(pool_shape(x, kernel_size, stride, padding, [1, 1], ceil_mode))


@define("cnnkern::avg_pool2d_backward", schema=f"(Tensor dy, SymInt[] x_shape, {_AVG}) -> Tensor")
def avg_pool2d_backward(
    dy: Tensor,
    x_shape: list[int],
    kernel_size: list[int],
    stride: list[int],
    padding: list[int],
    ceil_mode: bool,
    count_include_pad: bool,
) -> Tensor:
    kw = _avg_kw(kernel_size, stride, padding, ceil_mode, count_include_pad)
    return t_out(ops.avgpool2d_backward(arr_in(dy), tuple(x_shape), **kw, backend=backend_for(dy)))


@avg_pool2d_backward.register_fake
def _(dy, x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):  # type: ignore[no-untyped-def]
    return dy.new_empty(x_shape)


def _avg_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.x_shape, ctx.conf = inputs[0].shape, inputs[1:]


def _avg_grad(ctx: Any, dy: Tensor) -> tuple[Any, ...]:
    return (call(avg_pool2d_backward, dy, list(ctx.x_shape), *ctx.conf),) + (None,) * 5


register_autograd(avg_pool2d, _avg_grad, setup_context=_avg_setup)
