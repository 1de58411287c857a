"""The int8 kernels of each backend, behind one interface: ``conv2d_q8_forward``, ``dense_q8_forward``,
``dense_q8_acc`` and ``maxpool2d_q8_forward`` with the reference's signatures
(:mod:`cnnkern.backends.reference.quant`, the specification every backend equals exactly)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .qparams import quantize_input

if TYPE_CHECKING:
    from ..backends.base import Backend

# backend -> the module holding its int8 kernels (imported only when asked for)
MODULES = {
    "reference": "cnnkern.backends.reference.quant",
    "cpp": "cnnkern.backends.cpp_quant",
    "numba": "cnnkern.backends.numba.quant",
    "cuda": "cnnkern.backends.cuda.quant",
}
SUPPORTED = tuple(MODULES)


class QuantKernels:
    """One backend's int8 kernels (``name``: the backend)."""

    def __init__(self, name: str, module: ModuleType | Any) -> None:
        self.name = name
        self.conv2d_q8_forward: Any = module.conv2d_q8_forward
        self.dense_q8_forward: Any = module.dense_q8_forward
        self.dense_q8_acc: Any = module.dense_q8_acc
        self.maxpool2d_q8_forward: Any = module.maxpool2d_q8_forward
        # conv2d_q8_forward with a max pool (window = stride, no padding) fused, where a backend has it (cpp)
        self.conv2d_q8_pool_forward: Any = getattr(module, "conv2d_q8_pool_forward", None)
        # qparams.quantize_input, or the backend's own (cpp: in C++, equal to it)
        self.quantize_input: Any = getattr(module, "quantize_input", quantize_input)


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
    if name == "cuda":
        from ..backends.cuda.quant import CudaQuantKernels

        return QuantKernels(be.name, CudaQuantKernels(be))
    return QuantKernels(name, importlib.import_module(MODULES[name]))
