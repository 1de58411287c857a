"""The int8 kernels' front door (the ``quant`` family, declared in :mod:`cnnkern.kernels.quant`).

:class:`QuantKernels` holds one backend's int8 kernels behind methods generated from the table (its
signatures and docstrings). Each method normalises its arguments (contiguous arrays, Python ints and bools,
tuples), checks them once by the rules below, and calls the backend's function of the same name with the
table's arguments: arrays positionally, settings by keyword (the convention of the cpp bindings). So a
backend holds only its kernels:

* ``reference``: :mod:`cnnkern.backends.reference.quant`, the specification every backend equals exactly;
* ``cpp``: the ``cnnkern._cpp`` bindings themselves (csrc/kernels/quant.cpp). They check the shapes and the
  format's value ranges in C++, with the messages below, in one pass that costs far less than NumPy's scans
  at batch 1: for them this front door checks only the dtypes (``checks=False``);
* ``numba``: :mod:`cnnkern.backends.numba.quant`;
* ``cuda``: :class:`cnnkern.backends.cuda.quant.CudaQuantKernels` (taking and returning NumPy arrays).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backends.reference.quant import ACT_MAX, MAX_BIAS, MAX_REDUCTION, W_MAX
from ..kernel_methods import call_args, install, method
from ..kernels import PAIR, QUANT, Kernel

if TYPE_CHECKING:
    from ..backends.base import Backend

# backend -> the module holding its int8 kernels (imported only when asked for; cuda's are per Backend)
MODULES = {
    "reference": "cnnkern.backends.reference.quant",
    "cpp": "cnnkern.backends.cpp",
    "numba": "cnnkern.backends.numba.quant",
    "cuda": "cnnkern.backends.cuda.quant",
}
SUPPORTED = tuple(MODULES)
DTYPES = {
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "I32": np.dtype(np.int32),
    "F32": np.dtype(np.float32),
}
CASTS = {
    "int": "int",
    "bool": "bool",
    "float": "float",
    PAIR: "tuple",
}  # the settings' normal forms, by table type


# --- the rules, each reading the arguments it names (tests/test_conformance_quant.py: their messages) -------
def _layer_shapes(w: np.ndarray, bias: np.ndarray, reduction: int) -> None:
    if bias.shape != (w.shape[0],):
        raise ValueError(f"bias must have shape ({w.shape[0]},), got {bias.shape}")
    if reduction > MAX_REDUCTION:
        raise ValueError(f"the reduction length {reduction} exceeds {MAX_REDUCTION}")


def conv_shapes(x: np.ndarray, w: np.ndarray, bias: np.ndarray, groups: int) -> None:
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"x must be (N,H,W,C) and w (K,C/groups,R,S), got {x.shape}, {w.shape}")
    k, cg, r, s = w.shape
    _layer_shapes(w, bias, cg * r * s)
    if x.shape[3] != cg * groups or k % groups:
        raise ValueError(f"x {x.shape} and w {w.shape} do not match groups={groups}")


def dense_shapes(x: np.ndarray, w: np.ndarray, bias: np.ndarray) -> None:
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"x (N,in) and w (out,in) do not match: {x.shape}, {w.shape}")
    _layer_shapes(w, bias, w.shape[1])


def pool_shapes(x: np.ndarray) -> None:
    if x.ndim != 4:
        raise ValueError(f"x must be (N,H,W,C), got {x.shape}")


def layer_values(x: np.ndarray, w: np.ndarray, bias: np.ndarray, x_zero: int) -> None:
    """The format's value ranges (scans of every array)."""
    if x.size and int(x.max()) > ACT_MAX:
        raise ValueError(f"x holds {int(x.max())}: activations are 7-bit codes in [0, {ACT_MAX}]")
    if w.size and int(np.abs(w.astype(np.int16)).max()) > W_MAX:
        raise ValueError(f"w holds -128: weights are in [-{W_MAX}, {W_MAX}]")
    if bias.size and int(np.abs(bias.astype(np.int64)).max()) > MAX_BIAS:
        raise ValueError(f"|bias| must be <= 2**30, got {int(np.abs(bias.astype(np.int64)).max())}")
    if not 0 <= x_zero <= ACT_MAX:
        raise ValueError(f"x_zero must be in [0, {ACT_MAX}], got {x_zero}")


def requant(w: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, y_zero: int) -> None:
    """The epilogue's constants, one per output channel."""
    k = w.shape[0]
    if multiplier.shape != (k,) or shift.shape != (k,):
        raise ValueError(f"multiplier and shift must be int32 of shape ({k},)")
    m, s = multiplier.astype(np.int64), shift.astype(np.int64)
    if np.any((m != 0) & ((m < 1 << 30) | (m >= 1 << 31))) or np.any((s < 1) | (s > 62)):
        raise ValueError("multiplier must be 0 or in [2**30, 2**31), shift in [1, 62]")
    if not 0 <= y_zero <= ACT_MAX:
        raise ValueError(f"y_zero must be in [0, {ACT_MAX}], got {y_zero}")


def pool_window(pool: tuple[int, int]) -> None:
    if len(pool) != 2 or min(pool) < 1:
        raise ValueError(f"pool must be two positive ints, got {pool}")


def input_codes(scale: float, zero: int) -> None:
    if not scale > 0:
        raise ValueError("scale must be > 0")
    if not 0 <= zero <= ACT_MAX:
        raise ValueError(f"zero must be in [0, {ACT_MAX}], got {zero}")


RULES: dict[str, tuple[Callable[..., None], ...]] = {
    "conv2d_q8_forward": (conv_shapes, layer_values, requant),
    "conv2d_q8_pool_forward": (conv_shapes, layer_values, requant, pool_window),
    "quantize_input_q8": (input_codes,),
    "dense_q8_forward": (dense_shapes, layer_values, requant),
    "dense_q8_acc": (dense_shapes, layer_values),
    "maxpool2d_q8_forward": (pool_shapes,),
}


def dtype_error(kernel: Kernel, *arrays: np.ndarray) -> TypeError:
    """The error for arrays whose dtypes differ from the table's types, naming them all."""
    names = ", ".join(arg.name for arg in kernel.args if arg.type in DTYPES)
    wanted = ", ".join(str(DTYPES[arg.type]) for arg in kernel.args if arg.type in DTYPES)
    got = ", ".join(str(a.dtype) for a in arrays)
    return TypeError(f"{names} must be {wanted} arrays, got {got}")


def _front_door(kernel: Kernel) -> Callable[..., Any]:
    """The method: normalise, check the dtypes (for every backend: no scan), then with ``self.checks``
    the rules, then call the backend."""
    arrays = [arg for arg in kernel.args if arg.type in DTYPES]
    lines = [f"{arg.name} = _c({arg.name})" for arg in arrays]
    lines += [f"{arg.name} = {CASTS[arg.type]}({arg.name})" for arg in kernel.args if arg.type in CASTS]
    names = ", ".join(arg.name for arg in arrays)
    mismatch = " or ".join(f"{arg.name}.dtype != _{arg.type}" for arg in arrays)
    lines += [f"if {mismatch}:", f"    raise dtype_error(kernel, {names})", "if self.checks:"]
    for rule in RULES[kernel.name]:
        params = list(inspect.signature(rule).parameters)
        if not set(params) <= set(kernel.arg_names()):
            raise AssertionError(f"{rule.__name__} reads arguments {kernel.name} lacks: {params}")
        lines.append(f"    {rule.__name__}({', '.join(params)})")
    lines.append(f"return self.impl.{kernel.name}({call_args(kernel, keywords=True)})")
    namespace: dict[str, Any] = {"kernel": kernel, "_c": np.ascontiguousarray, "dtype_error": dtype_error}
    namespace.update({f"_{name}": dtype for name, dtype in DTYPES.items()})
    namespace.update({rule.__name__: rule for rule in RULES[kernel.name]})
    return method(kernel, "\n    ".join(lines), namespace)


class QuantKernels:
    """One backend's int8 kernels (``name``: the backend; ``impl``: the object holding them, called with the
    table's arguments; ``checks``: False where ``impl`` checks shapes and values itself)."""

    if TYPE_CHECKING:
        # the methods generated from the table below: untyped to the checker, by construction
        def __getattr__(self, name: str) -> Callable[..., Any]: ...

    def __init__(self, name: str, impl: Any, *, checks: bool = True) -> None:
        missing = [kernel.name for kernel in QUANT if not hasattr(impl, kernel.name)]
        if missing:
            raise RuntimeError(
                f"backend {name!r} has no int8 kernel {', '.join(missing)} (a cnnkern._cpp built from older "
                "sources? rebuild it: pip install --force-reinstall --no-deps cnnkern, or in a checkout: "
                "python setup.py build_ext --inplace)"
            )
        self.name, self.impl, self.checks = name, impl, checks


for _kernel in QUANT:
    install(QuantKernels, _front_door(_kernel))


def get(backend: str | None = None) -> QuantKernels:
    """The int8 kernels of ``backend`` (None or 'auto': the first of cpp, numba, reference that runs
    here; cuda only when named)."""
    from .. import backends

    if backend in (None, "auto"):
        for name in ("cpp", "numba"):
            if name in MODULES and backends.probe(name) is None:
                return get(name)
        return get("reference")
    if backend not in MODULES:
        raise ValueError(f"the int8 model runs on {', '.join(SUPPORTED)}, not backend {backend!r}")
    reason = backends.probe(backend)
    if reason is not None:
        raise RuntimeError(f"backend {backend!r} is unavailable: {reason}")
    return for_backend(backends.get(backend))


def for_backend(be: Backend) -> QuantKernels:
    """The int8 kernels of the backend object ``be`` (the cpp kernels follow its current SIMD path)."""
    name = "cuda" if be.name.startswith("cuda") else be.name  # the tests' emulated CUDA backend included
    if name not in MODULES:
        raise ValueError(f"the int8 model runs on {', '.join(SUPPORTED)}, not backend {be.name!r}")
    module = importlib.import_module(MODULES[name])
    if name == "cuda":
        return QuantKernels(be.name, module.CudaQuantKernels(be))
    if name == "cpp":
        return QuantKernels(name, module._cpp, checks=False)  # the bindings check in C++
    return QuantKernels(name, module)
