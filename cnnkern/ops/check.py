"""Argument checking and normalisation for the front door (docs/design.md §1): every rule lives here once.

ValueError for bad values and shapes, TypeError for a wrong dtype or array kind, IndexError for a class label
out of range. Messages name the argument, the value and the expected form.
"""

import numbers

import numpy as np

from ..backends.base import ACTIVATIONS

_FLOATS = (np.dtype("float32"), np.dtype("float64"))
_allowed = {}  # backend.dtypes (names) -> the dtype objects, so the hot path compares objects, not names


def array_types(backend):
    """The array class a backend takes (numpy.ndarray, or cupy.ndarray for the cuda backend)."""
    if backend.array_module == "cupy":
        import cupy

        return cupy.ndarray
    return np.ndarray


def _kind_name(backend):
    return "cupy.ndarray" if backend.array_module == "cupy" else "numpy.ndarray"


def _dtype_of(name, a, backend, writable):
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


def array(name, a, backend, *, ndim=None, dtype=None, writable=False, allow_empty=False):
    """Check one floating array: kind, dtype (one the backend runs), ndim; return it C-contiguous and in
    native byte order (a copy where needed).

    ``dtype``: the dtype it must share with the first array of the call (no silent casts).
    ``writable``: an in-place target, which must already be C-contiguous and writable (a copy would lose the
    update).
    """
    cls = array_types(backend)
    if not isinstance(a, cls):
        raise TypeError(
            f"{name} must be a {_kind_name(backend)} for the {backend.name!r} backend, got {type(a).__name__}"
        )
    dt = _dtype_of(name, a, backend, writable)
    if dt is None:
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
    if not allow_empty and a.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(a.shape)}")
    if writable:
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} is updated in place and must be C-contiguous, got strides {a.strides}")
        if not getattr(a.flags, "writeable", True):  # CuPy flags lack 'writeable': always writable
            raise ValueError(f"{name} is updated in place and must be writable")
        return a
    if not a.flags.c_contiguous:
        xp = np if cls is np.ndarray else __import__("cupy")
        a = xp.ascontiguousarray(a)
    return a


def optional_array(name, a, backend, **kw):
    return None if a is None else array(name, a, backend, **kw)


def shape_is(name, a, shape, what=""):
    if tuple(a.shape) != tuple(shape):
        extra = f" ({what})" if what else ""
        raise ValueError(f"{name} must have shape {tuple(shape)}{extra}, got {tuple(a.shape)}")


def labels(name, a, backend, n, num_classes):
    """Integer class labels (N,) in [0, num_classes), returned as contiguous int64."""
    cls = array_types(backend)
    if not isinstance(a, cls):
        raise TypeError(f"{name} must be a {_kind_name(backend)} of integers, got {type(a).__name__}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got {a.dtype.name}")
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {tuple(a.shape)}")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise IndexError(
            f"{name} holds class {bad}, outside [0, {num_classes}) for logits with {num_classes} classes"
        )
    return a.astype("int64", copy=False) if a.flags.c_contiguous else a.astype("int64")


def integer(name, v, *, minimum=None):
    if type(v) is int:  # the common case, without the ABC check below
        if minimum is not None and v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {v}")
        return v
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {v!r}")
    v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def number(name, v, *, minimum=None, maximum=None, below=None, above=None):
    if type(v) is not float and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    v = float(v)
    if v != v:
        raise ValueError(f"{name} must not be NaN")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {v}")
    if below is not None and not v < below:
        raise ValueError(f"{name} must be < {below}, got {v}")
    if above is not None and not v > above:
        raise ValueError(f"{name} must be > {above}, got {v}")
    return v


def flag(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {v!r}")
    return bool(v)


def pair(name, v, *, minimum):
    """An int or a pair of ints, each >= minimum, as an (h, w) tuple."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {v!r}")
        return tuple(integer(f"{name}[{i}]", x, minimum=minimum) for i, x in enumerate(v))
    v = integer(name, v, minimum=minimum)
    return (v, v)


def x_shape(name, v):
    if not isinstance(v, (tuple, list)) or len(v) != 4:
        raise ValueError(f"{name} must be a 4-tuple (N, C, H, W), got {v!r}")
    return tuple(integer(f"{name}[{i}]", d, minimum=1) for i, d in enumerate(v))


def activation_kind(kind, alpha, *, name="activation", allow_none=True):
    """An activation kind (or None where a fused kernel may skip it); returns alpha checked."""
    if not (kind in ACTIVATIONS or (allow_none and kind is None)):
        choices = ", ".join(ACTIVATIONS) + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be one of {choices}, got {kind!r}")
    return number("alpha", alpha)
