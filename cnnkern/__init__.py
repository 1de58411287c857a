"""cnnkern: hand-written CNN kernels with pluggable backends and a small Keras-style model layer.

``import cnnkern`` needs only NumPy; the compiled extension, Numba and CuPy are loaded when their backend
is first asked for. See :mod:`cnnkern.ops` for the kernels, :mod:`cnnkern.layers` and
:mod:`cnnkern.models` for the model layer.
"""

from __future__ import annotations

from typing import IO, Any

from . import backends, ops
from .backends import available, set_backend
from .errors import AllocationTooLargeError, BackendUnavailableError
from .threads import get_num_threads, set_num_threads


def _version() -> str:
    """The installed distribution's version; a checkout run without installing has no metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cnnkern")
    except PackageNotFoundError:
        return "0+unknown (not installed: run from a source tree)"


__version__ = _version()

__all__ = [
    "AllocationTooLargeError",
    "BackendUnavailableError",
    "available",
    "backends",
    "get_backend",
    "get_num_threads",
    "ops",
    "set_backend",
    "set_num_threads",
    "show_config",
]


def get_backend(name: str | backends.Backend | None = None) -> backends.Backend:
    """The backend object for ``name`` (None: the current default)."""
    return backends.resolve(name)


def show_config(file: IO[str] | None = None) -> None:
    """Print each backend, whether it can run here (or why not) and its details (SIMD path, threads...)."""
    from .info import config_text

    print(config_text(), file=file)


def __getattr__(name: str) -> Any:
    # layers, models, datasets are imported on first use so that `import cnnkern` stays light
    import importlib

    if name in ("layers", "models", "datasets", "optimizers", "callbacks", "utils", "saving"):
        return importlib.import_module(f".{name}", __name__)
    if name in ("Model", "Sequential", "load_model", "model_from_json"):  # Keras's top-level names
        return getattr(importlib.import_module(".models", __name__), name)
    if name == "Input":
        return importlib.import_module(".layers", __name__).Input
    raise AttributeError(f"module 'cnnkern' has no attribute {name!r}")
