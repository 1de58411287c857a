"""Type aliases shared by cnnkern's annotations. Only the type checker looks inside the aliases; at run time
they are plain objects and cost nothing."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from typing_extensions import TypeAlias

__all__ = ["BackendArray", "Logs", "PathLike", "Shape"]

Shape: TypeAlias = tuple[int, ...]
"""A per-sample or full array shape."""

BackendArray: TypeAlias = Any
"""An array on a model's backend: ``numpy.ndarray`` on the CPU backends, ``cupy.ndarray`` on cuda. CuPy has
no type information, so to the checker this is Any; the name says what is meant."""

PathLike: TypeAlias = Union[str, "os.PathLike[str]"]
"""A file name: a string or a ``pathlib.Path``-like object."""

Logs: TypeAlias = dict[str, float]
"""A callback's ``logs``: metric name -> value (``loss``, ``accuracy``, ``val_loss``...)."""
