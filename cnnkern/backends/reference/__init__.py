"""The NumPy reference backend: the executable specification. Readable NumPy, float32 and float64 (the
conformance suite runs it in float64 and compares every other backend with it)."""

from ..base import Backend
from . import activation, batchnorm, conv, dense, loss, optim, pool


def probe():
    return None


class ReferenceBackend(Backend):
    name = "reference"
    dtypes = ("float32", "float64")
    array_module = "numpy"


for _module in (conv, pool, batchnorm, dense, activation, loss, optim):
    for _name in dir(_module):
        if _name.endswith(("_forward", "_backward", "_update")):
            setattr(ReferenceBackend, _name, staticmethod(getattr(_module, _name)))


def create():
    return ReferenceBackend()
