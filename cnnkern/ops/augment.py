"""Augmentation kernels at the front door (forward only; declared in AUGMENT, cnnkern/kernels/basic.py).

The per-sample parameters are arrays of the backend's kind (NumPy, or CuPy for the cuda backend), drawn by
the caller: the preprocessing layers draw them from the model's seeded generator, so every backend gives the
same images for the same seed. Integer parameters may be any integer dtype (passed on as int64) and must lie
within +-2**31 - 1; float parameters share x's dtype and must be finite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backends import resolve
from . import check

if TYPE_CHECKING:
    from .._typing import BackendArray
    from ..backends.base import Backend
    from .check import BackendLike


def _ints(name: str, a: Any, be: Backend, n: int, cols: int, *, minimum: int) -> BackendArray:
    """An (n, cols) integer array with every value in [minimum, MAX_DIM], as contiguous int64."""
    cls = check.array_types(be)
    if not isinstance(a, cls):
        kind = "cupy" if be.array_module == "cupy" else "numpy"
        raise TypeError(f"{name} must be a {kind}.ndarray of integers, got {type(a).__name__}")
    a = check.base_class(name, a, cls, be)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got {a.dtype.name}")
    if tuple(a.shape) != (n, cols):
        raise ValueError(f"{name} must have shape ({n}, {cols}) for a batch of {n}, got {tuple(a.shape)}")
    if a.size:
        lo, hi = int(a.min()), int(a.max())
        if lo < minimum or hi > check.MAX_DIM:
            raise ValueError(f"{name} must lie in [{minimum}, {check.MAX_DIM}], got values in [{lo}, {hi}]")
    return check.int64_array(name, a)


def _floats(name: str, a: Any, be: Backend, shape: tuple[int, ...], dtype: np.dtype) -> BackendArray:
    """A finite float array of x's dtype and the given shape."""
    a = check.array(name, a, be, dtype=dtype, batch=True)
    check.shape_is(name, a, shape, f"one row per image of x, {shape}")
    if a.size and not bool(__import__(be.array_module).isfinite(a).all()):
        raise ValueError(f"{name} must be finite")
    return a


def augment_shift_forward(
    x: BackendArray,
    flip: BackendArray,
    offset: BackendArray,
    erase: BackendArray,
    *,
    out_hw: int | Sequence[int] | None = None,
    backend: BackendLike = None,
) -> BackendArray:
    """Per image: flip (flip[n] = [horizontal, vertical], 0 or 1), translate by offset[n] = [dy, dx] with zero
    padding into an (OH, OW) output (a crop at (top, left) is offset [-top, -left]), then set the box
    erase[n] = [top, left, height, width] to 0 (height or width 0: nothing erased). Exact copies."""
    be = resolve(backend)
    x = check.array("x", x, be, ndim=4, batch=True)
    n, c, h, w = x.shape
    flip = _ints("flip", flip, be, n, 2, minimum=0)
    if flip.size and int(flip.max()) > 1:
        raise ValueError(f"flip must hold 0 or 1, got {int(flip.max())}")
    offset = _ints("offset", offset, be, n, 2, minimum=-check.MAX_DIM)
    erase = _ints("erase", erase, be, n, 4, minimum=-check.MAX_DIM)
    if erase.size and int(erase[:, 2:].min()) < 0:
        raise ValueError(
            f"erase's height and width (columns 2, 3) must be >= 0, got {int(erase[:, 2:].min())}"
        )
    oh, ow = (h, w) if out_hw is None else check.pair("out_hw", out_hw, minimum=1)
    shape = (n, c, oh, ow)
    check.allocation(check.nbytes(shape, x.dtype), lambda: f"augment_shift_forward's output {shape}")
    if n == 0:
        return __import__(be.array_module).empty(shape, x.dtype)
    return be.augment_shift_forward(x, flip, offset, erase, out_hw=(oh, ow))


def augment_affine_forward(
    x: BackendArray, theta: BackendArray, *, fill_value: float = 0.0, backend: BackendLike = None
) -> BackendArray:
    """Bilinear resampling: output pixel (i, j) of image n samples x at column a0 j + a1 i + a2 and row
    a3 j + a4 i + a5 (theta[n] = [a0..a5], pixel centres at integers, Keras's transform layout without the
    projective terms); taps outside the image read ``fill_value`` (Keras's fill_mode='constant')."""
    be = resolve(backend)
    x = check.array("x", x, be, ndim=4, batch=True)
    theta = _floats("theta", theta, be, (x.shape[0], 6), x.dtype)
    fill_value = check.number("fill_value", fill_value, finite=True)
    check.allocation(check.nbytes(x.shape, x.dtype), lambda: f"augment_affine_forward's output {x.shape}")
    if x.shape[0] == 0:
        return __import__(be.array_module).empty(x.shape, x.dtype)
    return be.augment_affine_forward(x, theta, fill_value=fill_value)


def augment_color_forward(
    x: BackendArray,
    contrast: BackendArray,
    brightness: BackendArray,
    *,
    low: float = 0.0,
    high: float = 255.0,
    backend: BackendLike = None,
) -> BackendArray:
    """clip((x - mean) * contrast[n] + mean + brightness[n], low, high), the mean over each (n, c) plane:
    Keras's RandomContrast then RandomBrightness (value_range=(low, high))."""
    be = resolve(backend)
    x = check.array("x", x, be, ndim=4, batch=True)
    contrast = _floats("contrast", contrast, be, (x.shape[0],), x.dtype)
    brightness = _floats("brightness", brightness, be, (x.shape[0],), x.dtype)
    low = check.number("low", low, finite=True)
    high = check.number("high", high, finite=True, minimum=low)
    check.allocation(check.nbytes(x.shape, x.dtype), lambda: f"augment_color_forward's output {x.shape}")
    if x.shape[0] == 0:
        return __import__(be.array_module).empty(x.shape, x.dtype)
    return be.augment_color_forward(x, contrast, brightness, low=low, high=high)
