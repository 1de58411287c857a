"""Optimizer updates at the front door: in place on param (and the optimizer state).

Every hyperparameter must be a finite number (ValueError naming it otherwise): an infinite learning rate,
momentum, decay or epsilon turns the weights into NaN or -inf, differently on each backend, so none reaches
a kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..backends import Backend, resolve
from . import check

if TYPE_CHECKING:
    from .._typing import BackendArray
    from .check import BackendLike


def _state(
    be: Backend, param: BackendArray, grad: BackendArray, **state: BackendArray
) -> tuple[BackendArray, BackendArray, list[BackendArray]]:
    param = check.array("param", param, be, writable=True)
    dt = param.dtype
    grad = check.array("grad", grad, be, dtype=dt)
    check.shape_is("grad", grad, param.shape, "the shape of param")
    out = []
    for name, a in state.items():
        a = check.array(name, a, be, dtype=dt, writable=True)
        check.shape_is(name, a, param.shape, "the shape of param")
        out.append(a)
    return param, grad, out


def sgd_update(
    param: BackendArray,
    grad: BackendArray,
    velocity: BackendArray | None,
    *,
    lr: float,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    backend: BackendLike = None,
) -> None:
    """PyTorch's SGD step in place: g = grad + wd·param; v = momentum·v + g; param -= lr·(nesterov ? g +
    momentum·v : v). velocity may be None when momentum is 0."""
    be = resolve(backend)
    lr = check.number("lr", lr, minimum=0.0, finite=True)
    momentum = check.number("momentum", momentum, minimum=0.0, finite=True)
    weight_decay = check.number("weight_decay", weight_decay, minimum=0.0, finite=True)
    nesterov = check.flag("nesterov", nesterov)
    if nesterov and momentum == 0.0:
        raise ValueError("nesterov=True needs momentum > 0")
    if momentum > 0.0:
        if velocity is None:
            raise ValueError(
                f"velocity must be an array shaped like param when momentum={momentum}, got None"
            )
        param, grad, (velocity,) = _state(be, param, grad, velocity=velocity)
    else:
        param, grad, _ = _state(be, param, grad)
        velocity = None
    be.sgd_update(
        param, grad, velocity, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
    )


def _adam_hyper(
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    eps_mode: str,
    decoupled_weight_decay: bool,
) -> dict[str, Any]:
    step = check.integer("step", step, minimum=1, maximum=2**62)  # an int64 in every kernel
    lr = check.number("lr", lr, minimum=0.0, finite=True)
    beta1 = check.number("beta1", beta1, minimum=0.0, below=1.0, finite=True)
    beta2 = check.number("beta2", beta2, minimum=0.0, below=1.0, finite=True)
    eps = check.number("eps", eps, minimum=0.0, finite=True)
    weight_decay = check.number("weight_decay", weight_decay, minimum=0.0, finite=True)
    if eps_mode not in ("torch", "keras"):
        raise ValueError(f"eps_mode must be 'torch' or 'keras', got {eps_mode!r}")
    decoupled_weight_decay = check.flag("decoupled_weight_decay", decoupled_weight_decay)
    return dict(
        step=step,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        eps_mode=eps_mode,
        decoupled_weight_decay=decoupled_weight_decay,
    )


def adam_update(
    param: BackendArray,
    grad: BackendArray,
    m: BackendArray,
    v: BackendArray,
    *,
    step: int,
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    eps_mode: str = "torch",
    decoupled_weight_decay: bool = False,
    backend: BackendLike = None,
) -> None:
    """Adam step in place (PyTorch form). step counts from 1. eps_mode='keras' adds eps to sqrt(v) before the
    bias correction, as Keras does (use eps=1e-7 for Keras's default). decoupled_weight_decay: AdamW
    (param *= 1 - lr*weight_decay first, the gradient without the decay term), as torch.optim.AdamW."""
    be = resolve(backend)
    hyper = _adam_hyper(step, lr, beta1, beta2, eps, weight_decay, eps_mode, decoupled_weight_decay)
    param, grad, (m, v) = _state(be, param, grad, m=m, v=v)
    be.adam_update(param, grad, m, v, **hyper)


def adam_update_multi(
    params: Sequence[BackendArray],
    grads: Sequence[BackendArray],
    ms: Sequence[BackendArray],
    vs: Sequence[BackendArray],
    *,
    step: int,
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    eps_mode: str = "torch",
    decoupled_weight_decay: bool = False,
    backend: BackendLike = None,
) -> None:
    """One Adam step over every parameter at once (lists of param/grad/m/v, each quadruple of one shape): the
    same result as adam_update on each, in one kernel call where the backend fuses it."""
    be = resolve(backend)
    hyper = _adam_hyper(step, lr, beta1, beta2, eps, weight_decay, eps_mode, decoupled_weight_decay)
    lists = {"params": params, "grads": grads, "ms": ms, "vs": vs}
    for name, seq in lists.items():
        if not isinstance(seq, (list, tuple)):
            raise TypeError(f"{name} must be a list of arrays, got {type(seq).__name__}")
    if not len(params) == len(grads) == len(ms) == len(vs):
        sizes = ", ".join(f"{k}={len(v)}" for k, v in lists.items())
        raise ValueError(f"params, grads, ms and vs must have the same length, got {sizes}")
    if not params:
        raise ValueError("params must not be empty")
    dt = None
    out: tuple[list[BackendArray], ...] = ([], [], [], [])
    for i, (p, g, m, v) in enumerate(zip(params, grads, ms, vs)):
        p = check.array(f"params[{i}]", p, be, writable=True, dtype=dt)
        dt = p.dtype
        g = check.array(f"grads[{i}]", g, be, dtype=dt)
        m = check.array(f"ms[{i}]", m, be, dtype=dt, writable=True)
        v = check.array(f"vs[{i}]", v, be, dtype=dt, writable=True)
        for name, a in ((f"grads[{i}]", g), (f"ms[{i}]", m), (f"vs[{i}]", v)):
            check.shape_is(name, a, p.shape, f"the shape of params[{i}]")
        for lst, a in zip(out, (p, g, m, v)):
            lst.append(a)
    be.adam_update_multi(*out, **hyper)


def rmsprop_update(
    param: BackendArray,
    grad: BackendArray,
    square_avg: BackendArray,
    momentum_buffer: BackendArray | None,
    grad_avg: BackendArray | None,
    *,
    lr: float = 1e-3,
    rho: float = 0.9,
    eps: float = 1e-7,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    backend: BackendLike = None,
) -> None:
    """PyTorch's RMSprop step in place (``rho`` is its ``alpha``): g = grad + wd·param; s = rho·s +
    (1−rho)·g²; centered: a = rho·a + (1−rho)·g, d = sqrt(s − a²) + eps, else d = sqrt(s) + eps; with
    momentum: b = momentum·b + g/d, param −= lr·b, else param −= lr·g/d. momentum_buffer is None exactly
    when momentum is 0, grad_avg exactly when not centered."""
    be = resolve(backend)
    lr = check.number("lr", lr, minimum=0.0, finite=True)
    rho = check.number("rho", rho, minimum=0.0, maximum=1.0, finite=True)
    eps = check.number("eps", eps, minimum=0.0, finite=True)
    weight_decay = check.number("weight_decay", weight_decay, minimum=0.0, finite=True)
    momentum = check.number("momentum", momentum, minimum=0.0, finite=True)
    centered = check.flag("centered", centered)
    if (momentum > 0.0) != (momentum_buffer is not None):
        raise ValueError(
            f"momentum_buffer must be an array shaped like param exactly when momentum > 0 "
            f"(momentum={momentum}), got {'None' if momentum_buffer is None else 'an array'}"
        )
    if centered != (grad_avg is not None):
        raise ValueError(
            f"grad_avg must be an array shaped like param exactly when centered (centered={centered}), "
            f"got {'None' if grad_avg is None else 'an array'}"
        )
    state = {"square_avg": square_avg}
    if momentum_buffer is not None:
        state["momentum_buffer"] = momentum_buffer
    if grad_avg is not None:
        state["grad_avg"] = grad_avg
    param, grad, checked = _state(be, param, grad, **state)
    arrays = dict(zip(state, checked))
    be.rmsprop_update(
        param,
        grad,
        arrays["square_avg"],
        arrays.get("momentum_buffer"),
        arrays.get("grad_avg"),
        lr=lr,
        rho=rho,
        eps=eps,
        weight_decay=weight_decay,
        momentum=momentum,
        centered=centered,
    )
