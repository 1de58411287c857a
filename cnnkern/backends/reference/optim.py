"""Reference optimizer steps, in place (PyTorch's SGD, Adam / AdamW and RMSprop; Adam's eps placement per
eps_mode)."""

from __future__ import annotations

import math

import numpy as np


def sgd_update(
    param: np.ndarray,
    grad: np.ndarray,
    velocity: np.ndarray | None,
    *,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
) -> None:
    g = grad + weight_decay * param if weight_decay else grad
    if momentum:
        assert velocity is not None  # the front door: velocity is None iff momentum == 0
        velocity *= momentum
        velocity += g
        g = g + momentum * velocity if nesterov else velocity
    param -= (lr * g).astype(param.dtype, copy=False)


def adam_update(
    param: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    eps_mode: str,
    decoupled_weight_decay: bool = False,
) -> None:
    if decoupled_weight_decay:  # AdamW: the decay scales param, the gradient stays as it is
        param *= 1.0 - lr * weight_decay
        g = grad
    else:
        g = grad + weight_decay * param if weight_decay else grad
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    c1 = 1 - beta1**step
    c2 = 1 - beta2**step
    if eps_mode == "torch":
        update = (lr / c1) * m / (np.sqrt(v) / math.sqrt(c2) + eps)
    else:
        update = (lr * math.sqrt(c2) / c1) * m / (np.sqrt(v) + eps)
    param -= update.astype(param.dtype, copy=False)


def rmsprop_update(
    param: np.ndarray,
    grad: np.ndarray,
    square_avg: np.ndarray,
    momentum_buffer: np.ndarray | None,
    grad_avg: np.ndarray | None,
    *,
    lr: float,
    rho: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
) -> None:
    g = grad + weight_decay * param if weight_decay else grad
    square_avg *= rho
    square_avg += (1 - rho) * g * g
    if centered:
        assert grad_avg is not None  # the front door: grad_avg is None iff not centered
        grad_avg *= rho
        grad_avg += (1 - rho) * g
        avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = np.sqrt(square_avg) + eps
    if momentum:
        assert momentum_buffer is not None  # the front door: None iff momentum == 0
        momentum_buffer *= momentum
        momentum_buffer += g / avg
        param -= (lr * momentum_buffer).astype(param.dtype, copy=False)
    else:
        param -= (lr * g / avg).astype(param.dtype, copy=False)
