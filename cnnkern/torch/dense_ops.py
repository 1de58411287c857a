"""``cnnkern::linear`` (dense layer, bias and an optional activation: cnnkern's dense_bias_act kernel),
``cnnkern::activation`` and ``cnnkern::softmax_cross_entropy`` (the mean over the batch, as
F.cross_entropy), with backward ops, fake implementations and autograd formulas."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .. import ops
from ._bridge import arr_in, backend_for, grad_or_none, none_or, t_out
from ._eager import call, define, register_autograd

# ---- cnnkern::linear ---------------------------------------------------------------------------------------


@define(
    "cnnkern::linear",
    schema="(Tensor x, Tensor w, Tensor? b, str? activation, float alpha) -> Tensor",
)
def linear(x: Tensor, w: Tensor, b: Tensor | None, activation: str | None, alpha: float) -> Tensor:
    """act(x w^T + b) for x (N, in), w (out, in)."""
    y = ops.dense_bias_act_forward(
        arr_in(x), arr_in(w), arr_in(b), activation=activation, alpha=alpha, backend=backend_for(x)
    )
    return t_out(y)


@linear.register_fake
def _(x, w, b, activation, alpha):  # type: ignore[no-untyped-def]
    return x.new_empty([x.shape[0], w.shape[0]])


@define(
    "cnnkern::linear_backward",
    schema="(Tensor dy, Tensor x, Tensor w, Tensor y, str? activation, float alpha, bool need_dx, "
    "bool need_db) -> (Tensor, Tensor, Tensor)",
)
def linear_backward(
    dy: Tensor,
    x: Tensor,
    w: Tensor,
    y: Tensor,
    activation: str | None,
    alpha: float,
    need_dx: bool,
    need_db: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dw, db) from dy and the forward's output y (read only with an activation); empty where not
    asked for."""
    be = backend_for(x)
    g = arr_in(dy)
    if activation is not None:
        g = ops.activation_backward(g, arr_in(y), activation, alpha=alpha, backend=be)
    dx, dw, db = ops.dense_backward(g, arr_in(x), arr_in(w), need_dx=need_dx, need_db=need_db, backend=be)
    return none_or(dx, x), none_or(dw, x), none_or(db, x)


@linear_backward.register_fake
def _(dy, x, w, y, activation, alpha, need_dx, need_db):  # type: ignore[no-untyped-def]
    return (
        x.new_empty(list(x.shape) if need_dx else [0]),
        x.new_empty(list(w.shape)),
        x.new_empty([w.shape[0]] if need_db else [0]),
    )


def _linear_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, w, b, activation, alpha = inputs
    ctx.save_for_backward(x, w, output if activation is not None else None)
    ctx.conf, ctx.has_b = (activation, alpha), b is not None


def _linear_grad(ctx: Any, dy: Tensor) -> tuple[Any, ...]:
    x, w, y = ctx.saved_tensors
    need = ctx.needs_input_grad
    nb = need[2] and ctx.has_b
    y = dy if y is None else y
    dx, dw, db = call(linear_backward, dy, x, w, y, *ctx.conf, need[0], nb)
    return grad_or_none(dx, need[0]), grad_or_none(dw, need[1]), grad_or_none(db, nb), None, None


register_autograd(linear, _linear_grad, setup_context=_linear_setup)


# ---- cnnkern::activation -----------------------------------------------------------------------------------


@define("cnnkern::activation", schema="(Tensor x, str kind, float alpha) -> Tensor")
def activation(x: Tensor, kind: str, alpha: float) -> Tensor:
    """relu, leaky_relu (slope alpha >= 0), sigmoid or tanh, elementwise, any shape."""
    return t_out(ops.activation_forward(arr_in(x), kind, alpha=alpha, backend=backend_for(x)))


@activation.register_fake
def _(x, kind, alpha):  # type: ignore[no-untyped-def]
    return x.new_empty(x.shape)


@define(
    "cnnkern::activation_backward",
    schema="(Tensor dy, Tensor y, str kind, float alpha) -> Tensor",
)
def activation_backward(dy: Tensor, y: Tensor, kind: str, alpha: float) -> Tensor:
    """dx from dy and the forward's OUTPUT y."""
    return t_out(ops.activation_backward(arr_in(dy), arr_in(y), kind, alpha=alpha, backend=backend_for(y)))


@activation_backward.register_fake
def _(dy, y, kind, alpha):  # type: ignore[no-untyped-def]
    return y.new_empty(y.shape)


def _act_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.save_for_backward(output)
    ctx.conf = inputs[1:]


def _act_grad(ctx: Any, dy: Tensor) -> tuple[Any, ...]:
    (y,) = ctx.saved_tensors
    return call(activation_backward, dy, y, *ctx.conf), None, None


register_autograd(activation, _act_grad, setup_context=_act_setup)


# ---- cnnkern::softmax_cross_entropy ------------------------------------------------------------------------


@define(
    "cnnkern::softmax_cross_entropy",
    schema="(Tensor logits, Tensor labels) -> (Tensor, Tensor)",
)
def softmax_cross_entropy(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(the mean cross-entropy, a 0-d tensor; the softmax probabilities (N, C))."""
    loss, probs = ops.softmax_cross_entropy_forward(
        arr_in(logits), arr_in(labels), backend=backend_for(logits)
    )
    return t_out(loss), t_out(probs)


@softmax_cross_entropy.register_fake
def _(logits, labels):  # type: ignore[no-untyped-def]
    return logits.new_empty([]), logits.new_empty(logits.shape)


@define(
    "cnnkern::softmax_cross_entropy_backward",
    schema="(Tensor probs, Tensor labels) -> Tensor",
)
def softmax_cross_entropy_backward(probs: Tensor, labels: Tensor) -> Tensor:
    """d(mean loss)/d(logits) = (probs - onehot(labels)) / N."""
    return t_out(
        ops.softmax_cross_entropy_backward(arr_in(probs), arr_in(labels), backend=backend_for(probs))
    )


@softmax_cross_entropy_backward.register_fake
def _(probs, labels):  # type: ignore[no-untyped-def]
    return probs.new_empty(probs.shape)


def _ce_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    ctx.save_for_backward(output[1], inputs[1])
    ctx.mark_non_differentiable(output[1])


def _ce_grad(ctx: Any, dloss: Tensor, _dprobs: Any) -> tuple[Any, ...]:
    probs, labels = ctx.saved_tensors
    return call(softmax_cross_entropy_backward, probs, labels) * dloss, None


register_autograd(softmax_cross_entropy, _ce_grad, setup_context=_ce_setup)
