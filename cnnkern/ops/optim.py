"""Optimizer updates at the front door: in place on param (and the optimizer state)."""

from ..backends import resolve
from . import check


def _state(be, param, grad, **state):
    param = check.array("param", param, be, writable=True)
    dt = param.dtype.name
    grad = check.array("grad", grad, be, dtype=dt)
    check.shape_is("grad", grad, param.shape, "the shape of param")
    out = []
    for name, a in state.items():
        a = check.array(name, a, be, dtype=dt, writable=True)
        check.shape_is(name, a, param.shape, "the shape of param")
        out.append(a)
    return param, grad, out


def sgd_update(param, grad, velocity, *, lr, momentum=0.0, nesterov=False, weight_decay=0.0, backend=None):
    """PyTorch's SGD step in place: g = grad + wd·param; v = momentum·v + g; param -= lr·(nesterov ? g +
    momentum·v : v). velocity may be None when momentum is 0."""
    be = resolve(backend)
    lr = check.number("lr", lr, minimum=0.0)
    momentum = check.number("momentum", momentum, minimum=0.0)
    weight_decay = check.number("weight_decay", weight_decay, minimum=0.0)
    nesterov = check.flag("nesterov", nesterov)
    if nesterov and momentum == 0.0:
        raise ValueError("nesterov=True needs momentum > 0")
    if momentum > 0.0:
        if velocity is None:
            raise ValueError(f"velocity must be an array shaped like param when momentum={momentum}, got None")
        param, grad, (velocity,) = _state(be, param, grad, velocity=velocity)
    else:
        param, grad, _ = _state(be, param, grad)
        velocity = None
    be.sgd_update(param, grad, velocity, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


def adam_update(param, grad, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                eps_mode="torch", backend=None):
    """Adam step in place (PyTorch form). step counts from 1. eps_mode='keras' adds eps to sqrt(v) before the
    bias correction, as Keras does (use eps=1e-7 for Keras's default)."""
    be = resolve(backend)
    step = check.integer("step", step, minimum=1)
    lr = check.number("lr", lr, minimum=0.0)
    beta1 = check.number("beta1", beta1, minimum=0.0, below=1.0)
    beta2 = check.number("beta2", beta2, minimum=0.0, below=1.0)
    eps = check.number("eps", eps, minimum=0.0)
    weight_decay = check.number("weight_decay", weight_decay, minimum=0.0)
    if eps_mode not in ("torch", "keras"):
        raise ValueError(f"eps_mode must be 'torch' or 'keras', got {eps_mode!r}")
    param, grad, (m, v) = _state(be, param, grad, m=m, v=v)
    be.adam_update(param, grad, m, v, step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                   weight_decay=weight_decay, eps_mode=eps_mode)
