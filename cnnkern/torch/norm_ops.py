"""``cnnkern::batch_norm``: 2-D batch norm in training (batch statistics, and the running statistics after
PyTorch's momentum update with the unbiased variance) and eval (the running statistics), with its backward op,
fake implementation and autograd formula.

The op is functional (torch.library refuses an autograd formula on an op that mutates its inputs): it returns
the updated running statistics as new tensors, and the caller copies them into its buffers
(:func:`cnnkern.torch.functional.batch_norm` does)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .. import ops
from ._bridge import arr_in, backend_for, copy_if_shared, t_out
from ._eager import call, define, register_autograd


@define(
    "cnnkern::batch_norm",
    schema="(Tensor x, Tensor? gamma, Tensor? beta, Tensor running_mean, Tensor running_var, "
    "bool training, float momentum, float eps) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
)
def batch_norm(
    x: Tensor,
    gamma: Tensor | None,
    beta: Tensor | None,
    running_mean: Tensor,
    running_var: Tensor,
    training: bool,
    momentum: float,
    eps: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(y, mean, invstd, new running_mean, new running_var): mean and invstd are the statistics used, which
    the backward takes."""
    rm, rv = arr_in(running_mean.clone()), arr_in(running_var.clone())  # copies: the op is functional
    y, mean, invstd = ops.batchnorm2d_forward(
        arr_in(x),
        arr_in(gamma),
        arr_in(beta),
        rm,
        rv,
        training=training,
        momentum=momentum,
        eps=eps,
        backend=backend_for(x),
    )
    # an output may not share memory with an input (eval can hand back the running mean itself)
    mean, invstd = (copy_if_shared(a, rm, rv) for a in (mean, invstd))
    return t_out(y), t_out(mean), t_out(invstd), t_out(rm), t_out(rv)


@batch_norm.register_fake
def _(x, gamma, beta, running_mean, running_var, training, momentum, eps):  # type: ignore[no-untyped-def]
    c = x.shape[1]
    return x.new_empty(x.shape), x.new_empty([c]), x.new_empty([c]), x.new_empty([c]), x.new_empty([c])


@define(
    "cnnkern::batch_norm_backward",
    schema="(Tensor dy, Tensor x, Tensor? gamma, Tensor mean, Tensor invstd, bool training) "
    "-> (Tensor, Tensor, Tensor)",
)
def batch_norm_backward(
    dy: Tensor, x: Tensor, gamma: Tensor | None, mean: Tensor, invstd: Tensor, training: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dgamma, dbeta) from the forward's mean and invstd."""
    dx, dgamma, dbeta = ops.batchnorm2d_backward(
        arr_in(dy),
        arr_in(x),
        arr_in(gamma),
        arr_in(mean),
        arr_in(invstd),
        training=training,
        backend=backend_for(x),
    )
    return t_out(dx), t_out(dgamma), t_out(dbeta)


@batch_norm_backward.register_fake
def _(dy, x, gamma, mean, invstd, training):  # type: ignore[no-untyped-def]
    c = x.shape[1]
    return x.new_empty(x.shape), x.new_empty([c]), x.new_empty([c])


def _bn_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    x, gamma, beta, _, _, training, _, _ = inputs
    ctx.save_for_backward(x, gamma, output[1], output[2])
    ctx.training, ctx.has_beta = training, beta is not None
    ctx.mark_non_differentiable(*output[1:])


def _bn_grad(ctx: Any, dy: Tensor, *_stats: Any) -> tuple[Any, ...]:
    x, gamma, mean, invstd = ctx.saved_tensors
    dx, dgamma, dbeta = call(batch_norm_backward, dy, x, gamma, mean, invstd, ctx.training)
    return (
        dx,
        (dgamma if gamma is not None else None),
        (dbeta if ctx.has_beta else None),
        None,
        None,
        None,
        None,
        None,
    )


register_autograd(batch_norm, _bn_grad, setup_context=_bn_setup)
