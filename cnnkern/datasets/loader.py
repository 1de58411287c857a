"""Finding and loading an MNIST-style dataset directory: the four IDX files, checked against each other.

Where the files are looked for, first match wins:

1. the ``path`` argument (a directory);
2. the ``CNNKERN_DATA`` environment variable: ``$CNNKERN_DATA/<dataset>/`` (e.g. ``fashion-mnist``) if that
   directory exists, else ``$CNNKERN_DATA`` itself;
3. the system directory ``/usr/share/datasets/<dataset>/`` (Debian's ``dataset-fashion-mnist`` package).

A directory named by 1 or 2 must hold the data (no fallback: an explicit request that cannot be honoured is
an error). Only when 1 and 2 are unset and the system directory holds none of the four files may a loader
fall back to a bundled subset, and it says so with a warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from .._typing import PathLike
from .idx import IdxFormatError, read_idx

if TYPE_CHECKING:
    from typing_extensions import TypeAlias

Split: TypeAlias = tuple[NDArray[np.uint8], NDArray[np.uint8]]
"""``(images, labels)`` of one split: uint8 images (N, H, W) and uint8 labels (N,)."""
Data: TypeAlias = tuple[Split, Split]
"""``((x_train, y_train), (x_test, y_test))``, as Keras's ``load_data()`` returns it."""

SYSTEM_ROOT = Path("/usr/share/datasets")
# Keras's names for the four arrays -> the IDX file stem; each is looked for as <stem>.gz, then <stem>
FILES = (
    ("x_train", "train-images-idx3-ubyte"),
    ("y_train", "train-labels-idx1-ubyte"),
    ("x_test", "t10k-images-idx3-ubyte"),
    ("y_test", "t10k-labels-idx1-ubyte"),
)


def _file_in(directory: PathLike, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        p = Path(directory) / name
        if p.is_file():
            return p
    return None


def _missing(directory: PathLike) -> list[str]:
    return [stem for _, stem in FILES if _file_in(directory, stem) is None]


def locate(dataset: str, path: PathLike | None = None) -> tuple[Path, bool]:
    """``(directory, explicit)``: where ``dataset``'s files are to be read from, and whether that place was
    asked for (argument or environment) rather than the system default."""
    if path is not None:
        return Path(path), True
    env = os.environ.get("CNNKERN_DATA", "").strip()
    if env:
        sub = Path(env) / dataset
        return (sub if sub.is_dir() else Path(env)), True
    return SYSTEM_ROOT / dataset, False


def load_directory(
    directory: PathLike, *, image_shape: Sequence[int] = (28, 28), num_classes: int = 10
) -> Data:
    """``((x_train, y_train), (x_test, y_test))`` from the four IDX files in ``directory``: uint8 images
    ``(N, *image_shape)`` and uint8 labels ``(N,)`` in ``[0, num_classes)``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"data directory {directory} does not exist")
    missing = _missing(directory)
    if missing:
        raise FileNotFoundError(f"data directory {directory} lacks {', '.join(m + '[.gz]' for m in missing)}")
    arrays: dict[str, tuple[Path, NDArray[np.uint8]]] = {}
    for key, stem in FILES:
        path = _file_in(directory, stem)
        assert path is not None  # _missing() found all four
        images = key.startswith("x")
        a = read_idx(path, ndim=3 if images else 1)
        if a.dtype != np.uint8:
            raise IdxFormatError(f"{path}: holds {a.dtype.name} values, expected uint8")
        if images and a.shape[1:] != tuple(image_shape):
            raise IdxFormatError(
                f"{path}: images are {a.shape[1]}x{a.shape[2]}, expected {image_shape[0]}x{image_shape[1]}"
            )
        if not images and a.size and int(a.max()) >= num_classes:
            raise IdxFormatError(f"{path}: holds label {int(a.max())}, expected labels in [0, {num_classes})")
        arrays[key] = (path, a)
    for split in ("train", "test"):
        (xp, x), (yp, y) = arrays["x_" + split], arrays["y_" + split]
        if x.shape[0] != y.shape[0]:
            raise IdxFormatError(f"{xp} holds {x.shape[0]} images but {yp} holds {y.shape[0]} labels")
    data = {k: v for k, (_, v) in arrays.items()}
    return (data["x_train"], data["y_train"]), (data["x_test"], data["y_test"])


def load(
    dataset: str, path: PathLike | None = None, *, fallback: tuple[PathLike, str] | None = None
) -> tuple[Data, str]:
    """Load ``dataset`` from where :func:`locate` points. ``fallback``: a ``(directory, description)`` used,
    with a warning, when the system directory holds none of the files and nothing was asked for explicitly.
    Returns ``(data, source)`` where source is a one-line description of what was loaded."""
    directory, explicit = locate(dataset, path)
    if not explicit and fallback is not None and len(_missing(directory)) == len(FILES):
        fb_dir, description = fallback
        warnings.warn(
            f"{dataset}: no data in {directory} (set CNNKERN_DATA or pass path=); using {description}",
            UserWarning,
            stacklevel=3,
        )
        return load_directory(fb_dir), f"{description} ({fb_dir})"
    if not explicit and not directory.is_dir():
        raise FileNotFoundError(
            f"{dataset}: no data directory {directory}; pass path= or set CNNKERN_DATA to a "
            f"directory holding {', '.join(stem + '[.gz]' for _, stem in FILES)}"
        )
    return load_directory(directory), str(directory)
