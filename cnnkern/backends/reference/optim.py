"""Reference optimizer steps, in place (PyTorch's SGD and Adam; Adam's eps placement per eps_mode)."""

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
) -> None:
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
