"""Optimizer updates, in place over the flat parameter (PyTorch's forms); scalars in float64, each element
computed in float64 and rounded once to the array dtype.

param, grad, velocity | m, v: same shape and dtype.
  sgd:  g = grad + wd*param; momentum: vel = mu*vel + g; g = g + mu*vel (nesterov) or vel; param -= lr*g
  adam: g = grad + wd*param; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2
        torch: param -= (lr/(1-b1^t)) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
        keras: param -= (lr*sqrt(1-b2^t)/(1-b1^t)) * m / (sqrt(v) + eps)   (eps before the bias correction)
        decoupled (AdamW): param *= 1 - lr*wd first, and g = grad
  rmsprop: g = grad + wd*param; s = rho*s + (1-rho)*g^2; centered: a = rho*a + (1-rho)*g, d = sqrt(s - a^2)
        + eps, else d = sqrt(s) + eps; momentum: b = mu*b + g/d, param -= lr*b; else param -= lr*g/d
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit, prange

if TYPE_CHECKING:
    from ..base import Backend
    from . import MakeArray, WarmupCalls


@njit(parallel=True, cache=True)
def _sgd_plain(param, grad, lr, weight_decay):
    for i in prange(param.size):
        param[i] = param[i] - lr * (grad[i] + weight_decay * param[i])


@njit(parallel=True, cache=True)
def _sgd_momentum(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    for i in prange(param.size):
        g = grad[i] + weight_decay * param[i]
        vel = momentum * velocity[i] + g
        velocity[i] = vel
        step = g + momentum * vel if nesterov else vel
        param[i] = param[i] - lr * step


# error_model="numpy": IEEE division (0/0 -> NaN with eps 0, as PyTorch) without Python's zero-divisor
# test, a branch that stops LLVM from vectorising the loop
@njit(parallel=True, cache=True, error_model="numpy")
def _adam(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, keras, decay):
    # decay: AdamW's 1 - lr*wd (weight_decay then 0), else 1
    bias1 = 1.0 - beta1**step
    bias2_sqrt = math.sqrt(1.0 - beta2**step)
    for i in prange(param.size):
        if decay != 1.0:
            param[i] = param[i] * decay
        g = grad[i] + weight_decay * param[i]
        mi = beta1 * m[i] + (1.0 - beta1) * g
        vi = beta2 * v[i] + (1.0 - beta2) * g * g
        m[i] = mi
        v[i] = vi
        if keras:
            param[i] = param[i] - (lr * bias2_sqrt / bias1) * mi / (math.sqrt(vi) + eps)
        else:
            param[i] = param[i] - (lr / bias1) * mi / (math.sqrt(vi) / bias2_sqrt + eps)


def sgd_update(
    param: np.ndarray,
    grad: np.ndarray,
    velocity: np.ndarray | None,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
) -> None:
    if velocity is None:
        _sgd_plain(param.reshape(-1), grad.reshape(-1), float(lr), float(weight_decay))
    else:
        _sgd_momentum(
            param.reshape(-1), grad.reshape(-1), velocity.reshape(-1), float(lr), float(momentum),
            bool(nesterov), float(weight_decay),
        )  # fmt: skip


def adam_update(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    eps_mode: str,
    decoupled_weight_decay: bool = False,
) -> None:
    decay = 1.0 - lr * weight_decay if decoupled_weight_decay else 1.0
    _adam(
        param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), float(lr), float(beta1),
        float(beta2), float(eps), 0.0 if decoupled_weight_decay else float(weight_decay), int(step),
        eps_mode == "keras", float(decay),
    )  # fmt: skip


@njit(parallel=True, cache=True)
def _rmsprop(param, grad, square_avg, buf, gavg, lr, rho, eps, weight_decay, momentum, use_buf, centered):
    for i in prange(param.size):
        g = grad[i] + weight_decay * param[i]
        s = rho * square_avg[i] + (1.0 - rho) * g * g
        square_avg[i] = s
        if centered:
            a = rho * gavg[i] + (1.0 - rho) * g
            gavg[i] = a
            d = math.sqrt(s - a * a) + eps
        else:
            d = math.sqrt(s) + eps
        if use_buf:
            b = momentum * buf[i] + g / d
            buf[i] = b
            param[i] = param[i] - lr * b
        else:
            param[i] = param[i] - lr * (g / d)


def rmsprop_update(
    param: np.ndarray,
    grad: np.ndarray,
    square_avg: np.ndarray,
    momentum_buffer: np.ndarray | None,
    grad_avg: np.ndarray | None,
    lr: float,
    rho: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
) -> None:
    flat = square_avg.reshape(-1)  # stands in for a buffer that is off (never read then: one compiled loop)
    buf = flat if momentum_buffer is None else momentum_buffer.reshape(-1)
    gavg = flat if grad_avg is None else grad_avg.reshape(-1)
    _rmsprop(
        param.reshape(-1), grad.reshape(-1), flat, buf, gavg, float(lr), float(rho), float(eps),
        float(weight_decay), float(momentum), momentum_buffer is not None, grad_avg is not None,
    )  # fmt: skip


def warmup_calls(be: Backend, rand: MakeArray, zeros: MakeArray) -> WarmupCalls:
    """{kernel: closure} calling each kernel of this file once on tiny inputs that reach every compiled
    loop (the package's warmup(); ``rand(*shape)``/``zeros(*shape)`` make arrays of the dtype warmed)."""
    p, g, s1, s2 = rand(5), rand(5), zeros(5), zeros(5)
    adam: dict[str, Any] = dict(
        step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, eps_mode="torch"
    )

    def sgd() -> None:
        be.sgd_update(p, g, None, lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0)
        be.sgd_update(p, g, s1, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0)

    def adam_step() -> None:
        be.adam_update(p, g, s1, s2, **adam)

    def rmsprop() -> None:
        rms: dict[str, Any] = dict(lr=1e-3, rho=0.9, eps=1e-7, weight_decay=0.0)
        be.rmsprop_update(p, g, s1, s2, None, **rms, momentum=0.9, centered=False)

    return {"sgd_update": sgd, "adam_update": adam_step, "rmsprop_update": rmsprop}
