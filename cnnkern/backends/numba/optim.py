"""Optimizer updates, in place over the flat parameter (PyTorch's forms); scalars in float64, each element
computed in float64 and rounded once to the array dtype.

param, grad, velocity | m, v: same shape and dtype.
  sgd:  g = grad + wd*param; momentum: vel = mu*vel + g; g = g + mu*vel (nesterov) or vel; param -= lr*g
  adam: g = grad + wd*param; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2
        torch: param -= (lr/(1-b1^t)) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
        keras: param -= (lr*sqrt(1-b2^t)/(1-b1^t)) * m / (sqrt(v) + eps)   (eps before the bias correction)
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
def _adam(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, keras):
    bias1 = 1.0 - beta1**step
    bias2_sqrt = math.sqrt(1.0 - beta2**step)
    for i in prange(param.size):
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
) -> None:
    _adam(
        param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), float(lr), float(beta1),
        float(beta2), float(eps), float(weight_decay), int(step), eps_mode == "keras",
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

    return {"sgd_update": sgd, "adam_update": adam_step}
