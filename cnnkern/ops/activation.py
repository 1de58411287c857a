"""Activations at the front door: elementwise, any shape whose dimension 0 (the batch) may be 0.

The backward reads the forward OUTPUT y (docs/design.md §2), so leaky_relu takes alpha >= 0 only (check.py's
activation_kind says why).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backends import resolve
from . import check

if TYPE_CHECKING:
    from .._typing import BackendArray
    from .check import BackendLike


def _kind(kind: str, alpha: float) -> float:
    return check.activation_kind(kind, alpha, name="kind", allow_none=False)


def activation_forward(
    x: BackendArray, kind: str, *, alpha: float = 0.01, backend: BackendLike = None
) -> BackendArray:
    """relu, leaky_relu (slope alpha >= 0 below 0), sigmoid or tanh of x."""
    be = resolve(backend)
    alpha = _kind(kind, alpha)
    x = check.array("x", x, be, batch=True)
    if x.size == 0:
        return __import__(be.array_module).empty(x.shape, x.dtype)
    return be.activation_forward(x, kind, alpha=alpha)


def activation_backward(
    dy: BackendArray, y: BackendArray, kind: str, *, alpha: float = 0.01, backend: BackendLike = None
) -> BackendArray:
    """dL/dx from dL/dy and the forward OUTPUT y (as PyTorch does)."""
    be = resolve(backend)
    alpha = _kind(kind, alpha)
    y = check.array("y", y, be, batch=True)
    dy = check.array("dy", dy, be, dtype=y.dtype, batch=True)
    check.shape_is("dy", dy, y.shape, "the shape of y")
    if y.size == 0:
        return __import__(be.array_module).empty(y.shape, y.dtype)
    return be.activation_backward(dy, y, kind, alpha=alpha)
