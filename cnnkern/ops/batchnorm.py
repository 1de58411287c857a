"""Batch norm at the front door: x (N,C,H,W), per-channel gamma, beta, running stats (C,).

An empty batch (N = 0) follows torch.nn.functional.batch_norm (torch 2.13), answered here without a kernel:
y is empty; in training the running statistics are left as they are and the returned batch mean and invstd
are NaN (statistics of no values); in eval they are the running ones used. The backward gives an empty dx
and zero dgamma, dbeta.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backends import resolve
from . import check

if TYPE_CHECKING:
    from .._typing import BackendArray
    from .check import BackendLike


def batchnorm2d_forward(
    x: BackendArray,
    gamma: BackendArray | None,
    beta: BackendArray | None,
    running_mean: BackendArray,
    running_var: BackendArray,
    *,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
    backend: BackendLike = None,
) -> tuple[BackendArray, BackendArray, BackendArray]:
    """Returns (y, mean, invstd). training: batch statistics, running_mean/var updated in place (PyTorch's
    momentum, unbiased running variance); eval: the running statistics. gamma/beta None mean 1 and 0."""
    return _forward(x, gamma, beta, running_mean, running_var, training, momentum, eps, None, 0.0, backend)


def batchnorm2d_act_forward(
    x: BackendArray,
    gamma: BackendArray | None,
    beta: BackendArray | None,
    running_mean: BackendArray,
    running_var: BackendArray,
    *,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
    activation: str | None = None,
    alpha: float = 0.01,
    backend: BackendLike = None,
) -> tuple[BackendArray, BackendArray, BackendArray]:
    """``batchnorm2d_forward`` with ``activation_forward(y, activation, alpha=alpha)`` applied in its
    normalising pass where the backend has one kernel for both. Returns (act(y), mean, invstd). The backward
    is the unfused pair: activation_backward from act(y), then batchnorm2d_backward."""
    return _forward(
        x, gamma, beta, running_mean, running_var, training, momentum, eps, activation, alpha, backend
    )


def _forward(
    x: BackendArray,
    gamma: BackendArray | None,
    beta: BackendArray | None,
    running_mean: BackendArray,
    running_var: BackendArray,
    training: bool,
    momentum: float,
    eps: float,
    activation: str | None,
    alpha: float,
    backend: BackendLike,
) -> tuple[BackendArray, BackendArray, BackendArray]:
    be = resolve(backend)
    x = check.array("x", x, be, ndim=4, batch=True)
    dt = x.dtype
    c = x.shape[1]
    xp = __import__(be.array_module)
    gamma = xp.ones(c, dt) if gamma is None else check.array("gamma", gamma, be, ndim=1, dtype=dt)
    beta = xp.zeros(c, dt) if beta is None else check.array("beta", beta, be, ndim=1, dtype=dt)
    check.allocation(2 * check.nbytes(x.shape, dt), lambda: f"batchnorm2d_forward on x {x.shape}")
    training = check.flag("training", training)
    running_mean = check.array("running_mean", running_mean, be, ndim=1, dtype=dt, writable=training)
    running_var = check.array("running_var", running_var, be, ndim=1, dtype=dt, writable=training)
    for name, a in (
        ("gamma", gamma),
        ("beta", beta),
        ("running_mean", running_mean),
        ("running_var", running_var),
    ):
        check.shape_is(name, a, (c,), f"one value per channel of x {tuple(x.shape)}")
    momentum = check.number("momentum", momentum, minimum=0.0, maximum=1.0)
    eps = check.number("eps", eps, above=0.0, finite=True)
    alpha = check.activation_kind(activation, alpha)
    if training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
        raise ValueError(
            f"batch norm in training needs more than one value per channel, got x {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        if training:
            mean, invstd = xp.full(c, xp.nan, dt), xp.full(c, xp.nan, dt)
        else:
            mean, invstd = running_mean.copy(), (1 / xp.sqrt(running_var + dt.type(eps))).astype(dt)
        return xp.empty(x.shape, dt), mean, invstd
    if activation is None:
        return be.batchnorm2d_forward(
            x, gamma, beta, running_mean, running_var, training=training, momentum=momentum, eps=eps
        )
    return be.batchnorm2d_act_forward(
        x,
        gamma,
        beta,
        running_mean,
        running_var,
        training=training,
        momentum=momentum,
        eps=eps,
        activation=activation,
        alpha=alpha,
    )


def batchnorm2d_backward(
    dy: BackendArray,
    x: BackendArray,
    gamma: BackendArray | None,
    mean: BackendArray,
    invstd: BackendArray,
    *,
    training: bool = True,
    backend: BackendLike = None,
) -> tuple[BackendArray, BackendArray, BackendArray]:
    """Returns (dx, dgamma, dbeta) from the mean and invstd that the forward returned."""
    be = resolve(backend)
    x = check.array("x", x, be, ndim=4, batch=True)
    dt = x.dtype
    c = x.shape[1]
    dy = check.array("dy", dy, be, ndim=4, dtype=dt, batch=True)
    check.shape_is("dy", dy, x.shape, "the shape of x")
    xp = __import__(be.array_module)
    gamma = xp.ones(c, dt) if gamma is None else check.array("gamma", gamma, be, ndim=1, dtype=dt)
    mean = check.array("mean", mean, be, ndim=1, dtype=dt)
    invstd = check.array("invstd", invstd, be, ndim=1, dtype=dt)
    for name, a in (("gamma", gamma), ("mean", mean), ("invstd", invstd)):
        check.shape_is(name, a, (c,), f"one value per channel of x {tuple(x.shape)}")
    training = check.flag("training", training)
    check.allocation(2 * check.nbytes(x.shape, dt), lambda: f"batchnorm2d_backward on x {x.shape}")
    if x.shape[0] == 0:
        return xp.empty(x.shape, dt), xp.zeros(c, dt), xp.zeros(c, dt)
    return be.batchnorm2d_backward(dy, x, gamma, mean, invstd, training=training)
