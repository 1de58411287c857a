"""Reference optimizer steps, in place (PyTorch's SGD and Adam; Adam's eps placement per eps_mode)."""

import math

import numpy as np


def sgd_update(param, grad, velocity, *, lr, momentum, nesterov, weight_decay):
    g = grad + weight_decay * param if weight_decay else grad
    if momentum:
        velocity *= momentum
        velocity += g
        g = g + momentum * velocity if nesterov else velocity
    param -= (lr * g).astype(param.dtype, copy=False)


def adam_update(param, grad, m, v, *, step, lr, beta1, beta2, eps, weight_decay, eps_mode):
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
