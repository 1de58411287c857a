"""The NumPy reference backend: the executable specification. Readable NumPy, float32 and float64 (the
conformance suite runs it in float64 and compares every other backend with it)."""

from __future__ import annotations

import importlib

from ...kernels import BASIC
from ..base import Backend


def probe() -> str | None:
    return None


class ReferenceBackend(Backend):
    name = "reference"
    dtypes: tuple[str, ...] = ("float32", "float64")
    array_module = "numpy"


# each unfused kernel of the table is the function of the same name in reference/<family>.py; the fused
# ones are Backend's compositions of these (the reference has no fused code of its own)
for _kernel in BASIC:
    _module = importlib.import_module(f"{__name__}.{_kernel.family}")
    setattr(ReferenceBackend, _kernel.name, staticmethod(getattr(_module, _kernel.name)))


def create() -> ReferenceBackend:
    return ReferenceBackend()
