"""Datasets in Keras's form: ``(x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()``.

Real IDX files are read from disk (:mod:`.loader` says where); :mod:`.idx` reads and writes the format.
"""

from __future__ import annotations

from . import fashion_mnist, mnist
from .idx import IdxFormatError, read_idx, write_idx

__all__ = ["IdxFormatError", "fashion_mnist", "mnist", "read_idx", "write_idx"]
