"""Fashion-MNIST (Zalando): 28x28 grey images of 10 kinds of clothing; 60000 train, 10000 test.

``load_data()`` reads the real IDX files (see :mod:`cnnkern.datasets.loader` for where they are looked for);
when none are installed it falls back, with a warning, to the stratified subset bundled in the package
(``data/``: 900 train and 200 test images per class, drawn by ``scripts/make_subset.py``).
"""

from __future__ import annotations

from pathlib import Path

from .._typing import PathLike
from . import loader

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
BUNDLED_DIR = Path(__file__).parent / "data"
BUNDLED_DESCRIPTION = "the Fashion-MNIST subset bundled with cnnkern (9000 train, 2000 test images)"


def load(path: PathLike | None = None, *, subset: bool = False) -> tuple[loader.Data, str]:
    """``(data, source)``: the arrays of :func:`load_data` and a line saying where they came from."""
    if subset:
        return loader.load_directory(BUNDLED_DIR), f"{BUNDLED_DESCRIPTION} ({BUNDLED_DIR})"
    return loader.load("fashion-mnist", path, fallback=(BUNDLED_DIR, BUNDLED_DESCRIPTION))


def load_data(path: PathLike | None = None, *, subset: bool = False) -> loader.Data:
    """``((x_train, y_train), (x_test, y_test))`` as Keras returns them: uint8 images (N, 28, 28) and uint8
    labels (N,).

    path: a directory holding the four IDX files (``train-images-idx3-ubyte[.gz]`` ...); None looks in
    ``$CNNKERN_DATA``, then ``/usr/share/datasets/fashion-mnist``, then uses the bundled subset with a
    warning. subset=True: the bundled subset, whatever is installed.
    """
    return load(path, subset=subset)[0]
