"""MNIST handwritten digits: 28x28 grey images of 0-9; 60000 train, 10000 test.

``load_data()`` reads the IDX files (the same four names as Fashion-MNIST) from ``path``, else
``$CNNKERN_DATA/mnist`` (or ``$CNNKERN_DATA``), else ``/usr/share/datasets/mnist`` (the layout of Debian's
``dataset-fashion-mnist``; Debian has no MNIST package, so that directory is filled by hand). No subset is
bundled: without the files it raises :class:`FileNotFoundError` saying where it looked.
"""

from __future__ import annotations

from .._typing import PathLike
from . import loader

CLASS_NAMES = tuple(str(d) for d in range(10))


def load(path: PathLike | None = None) -> tuple[loader.Data, str]:
    """``(data, source)``: the arrays of :func:`load_data` and the directory they came from."""
    return loader.load("mnist", path)


def load_data(path: PathLike | None = None) -> loader.Data:
    """``((x_train, y_train), (x_test, y_test))``: uint8 images (N, 28, 28) and uint8 labels (N,)."""
    return load(path)[0]
