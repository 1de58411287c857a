"""Model compression for inference: batch-norm folding (:func:`fold_batchnorm`)."""

from __future__ import annotations

from .fold import fold_batchnorm

__all__ = ["fold_batchnorm"]
