"""Argument checking and normalisation for the front door (docs/design.md §1): every rule lives here once.

ValueError for bad values and shapes, TypeError for a wrong dtype or array kind, IndexError for a class label
out of range, :class:`AllocationTooLargeError` for a call whose outputs and copies would exceed the memory
limit. Messages name the argument, the value and the expected form.

Arrays (:func:`array`): an ndarray subclass is taken as a base-class view of the same memory (np.matrix,
np.memmap...), except a masked array, which is refused (the kernels would silently ignore its mask); a
non-contiguous, misaligned or byte-swapped array is copied (the C++ kernels read float32 through float*, so an
address not a multiple of the itemsize is undefined behaviour); an in-place target that would need a copy is
refused, since the copy would lose the update. Only the batch dimension (dimension 0) may be 0, and only
where the op says so (``batch=True``); the op then answers without calling a kernel.

Integers (:func:`integer`) are bounded: sizes, strides, paddings, dilations and groups below 2**31
(:data:`MAX_DIM`), so nothing reaches a kernel or an int64 product that could overflow.

Memory (:func:`allocation`): before a call allocates, the front door estimates the bytes of its outputs and
each copy it makes; above the limit it raises :class:`AllocationTooLargeError`. The limit is
``CNNKERN_MAX_ALLOC_BYTES`` (bytes, at least 16 MiB) when set, else a quarter of the memory available at the
time of the call (MemAvailable): estimates are made apart, and a copy, the output computed from it and the
temporaries of the NumPy reference must fit together.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from numpy.typing import DTypeLike

from .._typing import BackendArray, Shape
from ..backends.base import ACTIVATIONS, Backend
from ..errors import AllocationTooLargeError  # lives in errors.py; check.AllocationTooLargeError still works

if TYPE_CHECKING:
    from typing_extensions import TypeAlias

    IntPair: TypeAlias = int | Sequence[int]
    """An int or an (h, w) pair: the front door's stride, padding, dilation and kernel sizes."""
    BackendLike: TypeAlias = str | Backend | None
    """The front door's ``backend=``: a registry name, a Backend, or None for the current default."""

# Bound of every size-like integer argument (stride, padding, dilation, kernel size, groups, x_shape): the C++
# kernels index with int64, and no real image comes near 2**31 along a dimension.
MAX_DIM = 2**31 - 1


# Estimates up to this many bytes always pass (a smaller CNNKERN_MAX_ALLOC_BYTES acts as this), so that the
# calls of a training step never pay for reading the environment.
ALWAYS_FITS = 2**24


def memory_limit() -> int:
    """The most bytes one estimate (a contiguous copy, or a call's outputs and workspace) may take:
    ``CNNKERN_MAX_ALLOC_BYTES`` if set, else a quarter of the memory available now: each estimate is made
    apart, and a copy, the output computed from it and the reference backend's NumPy temporaries (two more of
    the same size in an elementwise op) must fit together."""
    env = os.environ.get("CNNKERN_MAX_ALLOC_BYTES")
    if env is not None and env.strip():
        try:
            limit = int(env)
        except ValueError:
            raise ValueError(f"CNNKERN_MAX_ALLOC_BYTES must be a number of bytes, got {env!r}") from None
        if limit < 1:
            raise ValueError(f"CNNKERN_MAX_ALLOC_BYTES must be >= 1, got {limit}")
        return limit
    return available_memory() // 4


def available_memory() -> int:
    """Bytes of memory available now: MemAvailable of /proc/meminfo (Linux), else the free pages, else the
    physical memory (os.sysconf), else 2**63 where none is known. Read at each large call: it changes."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf(pages)
        except (ValueError, OSError, AttributeError):
            continue
    return 2**63


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"


def allocation(nbytes: int, what: Callable[[], str]) -> None:
    """Raise AllocationTooLargeError if ``nbytes`` (an estimate, a Python int, so it never wraps) exceeds
    the memory limit; ``what()`` names the arguments and the arrays that the bytes come from (a callable, so
    that the message costs nothing on the hot path, where the call goes through)."""
    if nbytes <= ALWAYS_FITS:  # the common case, without reading the environment (2 us a call)
        return
    limit = max(memory_limit(), ALWAYS_FITS)
    if nbytes > limit:
        raise AllocationTooLargeError(
            f"{what()} would allocate about {nbytes} bytes ({_gib(nbytes)}), more than the limit of {limit} "
            f"bytes ({_gib(limit)}; set CNNKERN_MAX_ALLOC_BYTES to change it)"
        )


def nbytes(shape: Sequence[int], dtype: DTypeLike) -> int:
    """Bytes of an array of this shape and dtype, as a Python int (exact, never wrapping)."""
    n = dtype.itemsize if isinstance(dtype, np.dtype) else np.dtype(dtype).itemsize
    for d in shape:
        n *= int(d)
    return n


_FLOATS = (np.dtype("float32"), np.dtype("float64"))
# backend.dtypes (names) -> the dtype objects, so the hot path compares objects, not names
_allowed: dict[tuple[str, ...], tuple[np.dtype, ...]] = {}


def array_types(backend: Backend) -> type[Any]:
    """The array class a backend takes (numpy.ndarray, or cupy.ndarray for the cuda backend)."""
    if backend.array_module == "cupy":
        import cupy

        return cupy.ndarray
    return np.ndarray


def _kind_name(backend: Backend) -> str:
    return "cupy.ndarray" if backend.array_module == "cupy" else "numpy.ndarray"


def _dtype_of(name: str, a: BackendArray, backend: Backend, writable: bool) -> np.dtype | None:
    """a's dtype as one of _FLOATS, or an error; a non-native byte order is a layout (returned as None:
    the caller converts), except for an in-place target."""
    dt = a.dtype
    if dt in _FLOATS:
        return dt
    if dt.kind == "f" and dt.itemsize in (4, 8) and not dt.isnative:
        if writable:
            raise ValueError(f"{name} is updated in place and must have native byte order, got {dt.str}")
        return None
    raise TypeError(f"{name} must be float32 or float64, got dtype {dt.name}")


def base_class(name: str, a: Any, cls: type[Any], backend: Backend) -> BackendArray:
    """a as an instance of exactly ``cls`` (a view of the same memory for a subclass), or TypeError."""
    if type(a) is cls:
        return a
    if not isinstance(a, cls):
        raise TypeError(
            f"{name} must be a {_kind_name(backend)} for the {backend.name!r} backend, got {type(a).__name__}"
        )
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array ({type(a).__name__}); the kernels cannot honour a mask: pass "
            f"{name}.filled(value) or {name}.data explicitly"
        )
    if cls is np.ndarray:
        return a.view(np.ndarray)
    return cls(a.shape, a.dtype, a.data, a.strides)  # CuPy's view() takes a dtype, not a class


def _copy_check(name: str, a: BackendArray) -> None:
    """Refuse a copy the machine cannot hold (a zero-stride broadcast view is small until copied)."""
    allocation(a.size * a.itemsize, lambda: f"the contiguous copy of {name} {tuple(a.shape)} {a.dtype.name}")


def array(
    name: str,
    a: Any,
    backend: Backend,
    *,
    ndim: int | None = None,
    dtype: np.dtype | None = None,
    writable: bool = False,
    batch: bool = False,
) -> BackendArray:
    """Check one floating array: kind, dtype (one the backend runs), ndim; return it C-contiguous, aligned
    and in native byte order (a copy where needed), as the backend's base array class.

    ``dtype``: the dtype it must share with the first array of the call (no silent casts).
    ``writable``: an in-place target, which must already be C-contiguous, aligned and writable (a copy would
    lose the update).
    ``batch``: dimension 0 is a batch and may be 0 (every other dimension must still be >= 1).
    """
    cls = array_types(backend)
    a = base_class(name, a, cls, backend)
    dt = _dtype_of(name, a, backend, writable)
    if dt is None:
        _copy_check(name, a)
        a = a.astype(a.dtype.newbyteorder("="))
        dt = a.dtype
    allowed = _allowed.get(backend.dtypes)
    if allowed is None:
        allowed = _allowed.setdefault(backend.dtypes, tuple(np.dtype(n) for n in backend.dtypes))
    if dt not in allowed:
        raise TypeError(
            f"{name} has dtype {dt.name}, which the {backend.name!r} backend does not run "
            f"(it runs {', '.join(backend.dtypes)}); convert explicitly, e.g. {name}.astype('float32')"
        )
    if dtype is not None and dt != dtype:
        raise TypeError(
            f"{name} has dtype {dt.name} but the other arrays of this call are {np.dtype(dtype).name}; "
            "no implicit casts"
        )
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(a.shape)}")
    if a.size == 0 and not (batch and a.ndim > 0 and all(d > 0 for d in a.shape[1:])):
        what = "only its batch dimension (0) may be 0" if batch else "no dimension may be 0"
        raise ValueError(f"{name} must not be empty ({what}), got shape {tuple(a.shape)}")
    flags = a.flags
    aligned = getattr(flags, "aligned", True)  # CuPy allocations are always aligned and lack the flag
    if writable:
        if not flags.c_contiguous:
            raise ValueError(f"{name} is updated in place and must be C-contiguous, got strides {a.strides}")
        if not aligned:
            raise ValueError(
                f"{name} is updated in place and must be aligned to its itemsize {a.dtype.itemsize}; a copy "
                f"would lose the update (its address is {a.ctypes.data:#x})"
            )
        if not getattr(flags, "writeable", True):  # CuPy flags lack 'writeable': always writable
            raise ValueError(f"{name} is updated in place and must be writable")
        return a
    if not (flags.c_contiguous and aligned):
        _copy_check(name, a)
        if cls is np.ndarray:
            a = np.array(a, order="C", copy=True)  # ascontiguousarray would keep a misaligned contiguous view
        else:
            a = __import__("cupy").ascontiguousarray(a)
    return a


def optional_array(name: str, a: Any, backend: Backend, **kw: Any) -> BackendArray | None:
    return None if a is None else array(name, a, backend, **kw)


def shape_is(name: str, a: BackendArray, shape: Sequence[int], what: str = "") -> None:
    if tuple(a.shape) != tuple(shape):
        extra = f" ({what})" if what else ""
        raise ValueError(f"{name} must have shape {tuple(shape)}{extra}, got {tuple(a.shape)}")


def int64_array(name: str, a: BackendArray) -> BackendArray:
    """An int64 array checked elsewhere, returned C-contiguous, aligned and in native byte order."""
    if a.dtype == np.int64 and a.flags.c_contiguous and getattr(a.flags, "aligned", True):
        return a
    _copy_check(name, a)
    if isinstance(a, np.ndarray):
        return np.array(a, dtype=np.int64, order="C", copy=True)
    return a.astype("int64", order="C")


def labels(name: str, a: Any, backend: Backend, n: int, num_classes: int) -> BackendArray:
    """Integer class labels (N,) in [0, num_classes), returned as contiguous, aligned int64."""
    cls = array_types(backend)
    if not isinstance(a, cls):
        raise TypeError(f"{name} must be a {_kind_name(backend)} of integers, got {type(a).__name__}")
    a = base_class(name, a, cls, backend)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got {a.dtype.name}")
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {tuple(a.shape)}")
    if n == 0:
        return int64_array(name, a)
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise IndexError(
            f"{name} holds class {bad}, outside [0, {num_classes}) for logits with {num_classes} classes"
        )
    return int64_array(name, a)


def integer(name: str, v: Any, *, minimum: int | None = None, maximum: int | None = MAX_DIM) -> int:
    """An int in [minimum, maximum] (maximum: MAX_DIM unless given; None: unbounded)."""
    if type(v) is not int:  # the common case skips the ABC check
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be an int, got {v!r}")
        v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {v}")
    return v


def number(
    name: str,
    v: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    below: float | None = None,
    above: float | None = None,
    finite: bool = False,
) -> float:
    """A real number as a float, never NaN; ``finite``: never +-inf either (hyperparameters: an infinite
    learning rate or epsilon turns every weight into NaN or -inf)."""
    if type(v) is not float and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    try:
        v = float(v)
    except OverflowError:  # an int beyond the float range
        raise ValueError(f"{name} must be a finite number, got {v}") from None
    if v != v:
        raise ValueError(f"{name} must not be NaN")
    if finite and v in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {v}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {v}")
    if below is not None and not v < below:
        raise ValueError(f"{name} must be < {below}, got {v}")
    if above is not None and not v > above:
        raise ValueError(f"{name} must be > {above}, got {v}")
    return v


def flag(name: str, v: Any) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {v!r}")
    return bool(v)


def pair(name: str, v: Any, *, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum, as an (h, w) tuple."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {v!r}")
        return (integer(f"{name}[0]", v[0], minimum=minimum), integer(f"{name}[1]", v[1], minimum=minimum))
    v = integer(name, v, minimum=minimum)
    return (v, v)


def x_shape(name: str, v: Any) -> Shape:
    """(N, C, H, W), each a bounded int >= 1 except the batch N, which may be 0."""
    if not isinstance(v, (tuple, list)) or len(v) != 4:
        raise ValueError(f"{name} must be a 4-tuple (N, C, H, W), got {v!r}")
    return tuple(integer(f"{name}[{i}]", d, minimum=0 if i == 0 else 1) for i, d in enumerate(v))


def activation_kind(
    kind: str | None, alpha: Any, *, name: str = "activation", allow_none: bool = True
) -> float:
    """An activation kind (or None where a fused kernel may skip it); returns alpha checked: finite, and for
    leaky_relu >= 0. Every activation's backward reads the forward OUTPUT y (docs/design.md §2), and
    leaky_relu's branch is y > 0; a negative slope maps x < 0 to y > 0, so its gradient could not be told from
    y (PyTorch refuses the same case for its in-place leaky_relu, whose backward sees only the output)."""
    if not (kind in ACTIVATIONS or (allow_none and kind is None)):
        choices = ", ".join(ACTIVATIONS) + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be one of {choices}, got {kind!r}")
    alpha = number("alpha", alpha, finite=True)
    if kind == "leaky_relu" and alpha < 0.0:
        raise ValueError(
            f"alpha must be >= 0 for leaky_relu, got {alpha}: the backward works from the output y, "
            "whose sign a negative slope flips (the gradient would be wrong)"
        )
    return alpha
