"""Model compression for inference: batch-norm folding (:func:`fold_batchnorm`) and int8 post-training
quantization (:func:`quantize`, giving a :class:`QuantizedModel`; the integer formats are specified in
:mod:`cnnkern.backends.reference.quant`)."""

from __future__ import annotations

from .fold import fold_batchnorm
from .qmodel import QuantizedModel
from .quantize import quantize

__all__ = ["QuantizedModel", "fold_batchnorm", "quantize"]
