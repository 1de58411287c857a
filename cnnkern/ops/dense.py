"""Dense (fully connected) at the front door: x (N,in), w (out,in), b (out,) -> y (N,out).

An empty batch (N = 0) is answered here without a kernel, as PyTorch: an empty y, an empty dx, zero dw, db.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from numpy.typing import DTypeLike

from ..backends import Backend, resolve
from . import check

if TYPE_CHECKING:
    from .._typing import BackendArray
    from .check import BackendLike


def _empty(be: Backend, shape: Sequence[int], dtype: DTypeLike) -> BackendArray:
    return __import__(be.array_module).empty(shape, dtype)


def _check(x: BackendArray, w: BackendArray, be: Backend) -> tuple[BackendArray, BackendArray]:
    x = check.array("x", x, be, ndim=2, batch=True)
    w = check.array("w", w, be, ndim=2, dtype=x.dtype)
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"w must have shape (out, {x.shape[1]}) for x {tuple(x.shape)}, got {tuple(w.shape)}"
        )
    return x, w


def _forward_args(
    be: Backend, x: BackendArray, w: BackendArray, b: BackendArray | None
) -> tuple[BackendArray, BackendArray, BackendArray | None]:
    """The checks shared by dense_forward and its fused variant."""
    x, w = _check(x, w, be)
    b = check.optional_array("b", b, be, ndim=1, dtype=x.dtype)
    if b is not None:
        check.shape_is("b", b, (w.shape[0],), "one bias per output")
    return x, w, b


def dense_forward(
    x: BackendArray, w: BackendArray, b: BackendArray | None = None, *, backend: BackendLike = None
) -> BackendArray:
    """y = x·wᵀ + b."""
    be = resolve(backend)
    x, w, b = _forward_args(be, x, w, b)
    if x.shape[0] == 0:
        return _empty(be, (0, w.shape[0]), x.dtype)
    return be.dense_forward(x, w, b)


def dense_backward(
    dy: BackendArray,
    x: BackendArray,
    w: BackendArray,
    *,
    need_dx: bool = True,
    need_db: bool = True,
    backend: BackendLike = None,
) -> tuple[BackendArray | None, BackendArray, BackendArray | None]:
    """Returns (dx, dw, db): dx = dy·w, dw = dyᵀ·x, db = Σₙ dy; None where not asked for."""
    be = resolve(backend)
    x, w = _check(x, w, be)
    dy = check.array("dy", dy, be, ndim=2, dtype=x.dtype, batch=True)
    check.shape_is("dy", dy, (x.shape[0], w.shape[0]), "(N, out)")
    need_dx, need_db = check.flag("need_dx", need_dx), check.flag("need_db", need_db)
    if x.shape[0] == 0:
        from .conv import empty_batch_grads

        return empty_batch_grads(be, x, w, need_dx, True, need_db)
    return be.dense_backward(dy, x, w, need_dx=need_dx, need_db=need_db)


def dense_bias_act_forward(
    x: BackendArray,
    w: BackendArray,
    b: BackendArray | None = None,
    *,
    activation: str | None = None,
    alpha: float = 0.01,
    backend: BackendLike = None,
) -> BackendArray:
    """``activation_forward(dense_forward(x, w, b), activation)`` as one fused kernel where the backend has
    one."""
    be = resolve(backend)
    x, w, b = _forward_args(be, x, w, b)
    alpha = check.activation_kind(activation, alpha)
    if x.shape[0] == 0:
        return _empty(be, (0, w.shape[0]), x.dtype)
    return be.dense_bias_act_forward(x, w, b, activation=activation, alpha=alpha)
