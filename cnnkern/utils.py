"""Keras's ``keras.utils`` helpers that training scripts reach for: :func:`to_categorical` and
:func:`normalize` (no ``set_random_seed``: a cnnkern model takes ``seed=``)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

__all__ = ["normalize", "to_categorical"]


def to_categorical(x: ArrayLike, num_classes: int | None = None, dtype: DTypeLike = "float32") -> np.ndarray:
    """Class indices -> one-hot rows (a trailing axis of ``num_classes``; default ``max(x) + 1``), as Keras.
    A trailing axis of size 1 is dropped first, as Keras does."""
    y = np.asarray(x)
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
        raise TypeError(f"x must hold integer class indices, got dtype {y.dtype.name}")
    y = y.astype(np.int64)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"x holds class {int(y.min() if y.min() < 0 else y.max())}, outside [0, {num_classes})"
        )
    out = np.zeros((*y.shape, int(num_classes)), dtype=dtype)
    np.put_along_axis(out, y[..., None], 1, axis=-1)
    return out


def normalize(x: ArrayLike, axis: int = -1, order: int = 2) -> np.ndarray:
    """``x`` divided by its ``order``-norm along ``axis`` (zero vectors stay zero), as Keras."""
    a = np.asarray(x, dtype=np.result_type(np.asarray(x).dtype, np.float32))
    norm = np.linalg.norm(a, ord=order, axis=axis, keepdims=True)
    return a / np.where(norm == 0, 1, norm)
