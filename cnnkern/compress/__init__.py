"""Model compression for inference: batch-norm folding (:func:`fold_batchnorm`) and int8 post-training
quantization (:func:`quantize`, giving a :class:`QuantizedModel`; the integer formats are specified in
:mod:`cnnkern.backends.reference.quant`). ONNX export: :mod:`.onnx_export` (float models) and
:mod:`.onnx_int8` (``QuantizedModel.export_onnx``).

The names load on first use, so that the command line (which registers ``cnnkern quantize`` from
:mod:`cnnkern.compress.cli`) starts without the model layer."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fold import fold_batchnorm
    from .ptq import quantize
    from .qmodel import QuantizedModel

__all__ = ["QuantizedModel", "fold_batchnorm", "quantize"]
_HOMES = {"fold_batchnorm": ".fold", "QuantizedModel": ".qmodel", "quantize": ".ptq"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name], __name__), name)
