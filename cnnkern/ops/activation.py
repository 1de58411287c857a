"""Activations at the front door: elementwise, any shape."""

from ..backends import resolve
from . import check


def _kind(kind, alpha):
    return check.activation_kind(kind, alpha, name="kind", allow_none=False)


def activation_forward(x, kind, *, alpha=0.01, backend=None):
    """relu, leaky_relu (slope alpha below 0), sigmoid or tanh of x."""
    be = resolve(backend)
    alpha = _kind(kind, alpha)
    x = check.array("x", x, be)
    return be.activation_forward(x, kind, alpha=alpha)


def activation_backward(dy, y, kind, *, alpha=0.01, backend=None):
    """dL/dx from dL/dy and the forward OUTPUT y (as PyTorch does)."""
    be = resolve(backend)
    alpha = _kind(kind, alpha)
    y = check.array("y", y, be)
    dy = check.array("dy", dy, be, dtype=y.dtype)
    check.shape_is("dy", dy, y.shape, "the shape of y")
    return be.activation_backward(dy, y, kind, alpha=alpha)
