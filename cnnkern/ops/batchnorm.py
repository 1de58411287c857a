"""Batch norm at the front door: x (N,C,H,W), per-channel gamma, beta, running stats (C,).

An empty batch (N = 0) follows torch.nn.functional.batch_norm (torch 2.13), answered here without a kernel:
y is empty; in training the running statistics are left as they are and the returned batch mean and invstd
are NaN (statistics of no values); in eval they are the running ones used. The backward gives an empty dx
and zero dgamma, dbeta. The fused batch norm + activation + max pool pair follows the same rules (an empty
pooled y and argmax).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..backends import resolve
from . import check
from . import pool as pool_ops

if TYPE_CHECKING:
    from .._typing import BackendArray
    from ..backends.base import Backend
    from .check import BackendLike, IntPair


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
    x, gamma, beta, running_mean, running_var, training, momentum, eps, alpha = _forward_args(
        be, x, gamma, beta, running_mean, running_var, training, momentum, eps, activation, alpha
    )
    if x.shape[0] == 0:
        return (__import__(be.array_module).empty(x.shape, x.dtype),) + _empty_batch_stats(
            be, x, running_mean, running_var, training, eps
        )
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


def _forward_args(
    be: Backend,
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
) -> tuple[Any, ...]:
    """The forward's arguments checked (gamma / beta None made 1 / 0): (x, gamma, beta, running_mean,
    running_var, training, momentum, eps, alpha)."""
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
    return x, gamma, beta, running_mean, running_var, training, momentum, eps, alpha


def _empty_batch_stats(
    be: Backend,
    x: BackendArray,
    running_mean: BackendArray,
    running_var: BackendArray,
    training: bool,
    eps: float,
) -> tuple[BackendArray, BackendArray]:
    """(mean, invstd) of an empty batch: NaN in training (statistics of no values), else the running ones."""
    xp, dt, c = __import__(be.array_module), x.dtype, x.shape[1]
    if training:
        return xp.full(c, xp.nan, dt), xp.full(c, xp.nan, dt)
    return running_mean.copy(), (1 / xp.sqrt(running_var + dt.type(eps))).astype(dt)


def batchnorm2d_act_maxpool_forward(
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
    pool_size: IntPair,
    pool_stride: IntPair | None = None,
    pool_padding: IntPair = 0,
    pool_dilation: IntPair = 1,
    ceil_mode: bool = False,
    backend: BackendLike = None,
) -> tuple[BackendArray, BackendArray, BackendArray, BackendArray]:
    """``maxpool2d_forward(batchnorm2d_act_forward(x, ...)[0], kernel_size=pool_size, stride=pool_stride,
    ...)`` in one kernel where the backend has one: returns (y, argmax, mean, invstd), argmax int64
    (N,C,P,Q) a flat index into the H*W plane of x (what batchnorm2d_act_maxpool_backward takes), mean and
    invstd the statistics used. Batch-norm arguments as batchnorm2d_forward (running statistics updated in
    place when training), activation None or a kind of activation_forward, pool arguments as
    maxpool2d_forward's kernel_size, stride (default: pool_size), padding, dilation and ceil_mode."""
    be = resolve(backend)
    x, gamma, beta, running_mean, running_var, training, momentum, eps, alpha = _forward_args(
        be, x, gamma, beta, running_mean, running_var, training, momentum, eps, activation, alpha
    )
    k, s, p, d, ceil_mode, out = pool_ops._geometry(
        tuple(x.shape), pool_size, pool_stride, pool_padding, pool_dilation, ceil_mode
    )
    what = lambda: f"batchnorm2d_act_maxpool_forward's pool on x {tuple(x.shape)}, pool_size {k}"  # noqa: E731
    pool_ops._budget(tuple(x.shape), x.dtype, p, out, what)
    if x.shape[0] == 0:
        xp = __import__(be.array_module)
        y_shape = tuple(x.shape[:2]) + out
        stats = _empty_batch_stats(be, x, running_mean, running_var, training, eps)
        return (xp.empty(y_shape, x.dtype), xp.empty(y_shape, "int64")) + stats
    return be.batchnorm2d_act_maxpool_forward(
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
        pool_kernel=k,
        pool_stride=s,
        pool_padding=p,
        pool_dilation=d,
        pool_ceil_mode=ceil_mode,
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
    x, gamma, mean, invstd, training = _backward_args(be, x, gamma, mean, invstd, training)
    dy = check.array("dy", dy, be, ndim=4, dtype=x.dtype, batch=True)
    check.shape_is("dy", dy, x.shape, "the shape of x")
    if x.shape[0] == 0:
        return _empty_batch_grads(be, x)
    return be.batchnorm2d_backward(dy, x, gamma, mean, invstd, training=training)


def _backward_args(
    be: Backend,
    x: BackendArray,
    gamma: BackendArray | None,
    mean: BackendArray,
    invstd: BackendArray,
    training: bool,
) -> tuple[Any, ...]:
    """(x, gamma, mean, invstd, training) of a backward, checked (gamma None made 1)."""
    x = check.array("x", x, be, ndim=4, batch=True)
    dt = x.dtype
    c = x.shape[1]
    xp = __import__(be.array_module)
    gamma = xp.ones(c, dt) if gamma is None else check.array("gamma", gamma, be, ndim=1, dtype=dt)
    mean = check.array("mean", mean, be, ndim=1, dtype=dt)
    invstd = check.array("invstd", invstd, be, ndim=1, dtype=dt)
    for name, a in (("gamma", gamma), ("mean", mean), ("invstd", invstd)):
        check.shape_is(name, a, (c,), f"one value per channel of x {tuple(x.shape)}")
    training = check.flag("training", training)
    check.allocation(2 * check.nbytes(x.shape, dt), lambda: f"batchnorm2d_backward on x {x.shape}")
    return x, gamma, mean, invstd, training


def _empty_batch_grads(be: Backend, x: BackendArray) -> tuple[BackendArray, BackendArray, BackendArray]:
    xp, dt, c = __import__(be.array_module), x.dtype, x.shape[1]
    return xp.empty(x.shape, dt), xp.zeros(c, dt), xp.zeros(c, dt)


def batchnorm2d_act_maxpool_backward(
    dy: BackendArray,
    y: BackendArray,
    argmax: BackendArray,
    x: BackendArray,
    gamma: BackendArray | None,
    mean: BackendArray,
    invstd: BackendArray,
    *,
    training: bool = True,
    activation: str | None = None,
    alpha: float = 0.01,
    backend: BackendLike = None,
) -> tuple[BackendArray, BackendArray, BackendArray]:
    """Gradients (dx, dgamma, dbeta) of batchnorm2d_act_maxpool_forward from dy = dL/dy and the forward's y
    and argmax (all (N,C,P,Q)), its input x, gamma and its mean and invstd: ``batchnorm2d_backward(
    maxpool2d_backward(activation_backward(dy, y, activation), argmax, x.shape), x, gamma, mean, invstd)``."""
    be = resolve(backend)
    x, gamma, mean, invstd, training = _backward_args(be, x, gamma, mean, invstd, training)
    dy = check.array("dy", dy, be, ndim=4, dtype=x.dtype, batch=True)
    y = check.array("y", y, be, ndim=4, dtype=x.dtype, batch=True)
    check.shape_is("y", y, dy.shape, "the shape of dy: the pooled output of the forward")
    alpha = check.activation_kind(activation, alpha)
    argmax = pool_ops._argmax_checked(dy, argmax, tuple(int(n) for n in x.shape), be, shape_name="x")
    if x.shape[0] == 0:
        return _empty_batch_grads(be, x)
    return be.batchnorm2d_act_maxpool_backward(
        dy, y, argmax, x, gamma, mean, invstd, training=training, activation=activation, alpha=alpha
    )
