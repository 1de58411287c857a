"""Compile the CUDA kernel files at run time (NVRTC through CuPy's RawModule), once per device, lazily.

Each ``<stem>.cu`` next to this file is one module. Its local ``#include "x.cuh"`` lines are replaced by the
header's text (each header once, like ``#pragma once``), so NVRTC needs no include path and CuPy's on-disk
kernel cache, keyed by the source text, sees every header change. Everything here but :func:`function`
works without CuPy (the tests compile the same sources with nvcc and NVRTC on machines without a GPU).
"""

from __future__ import annotations

import pathlib
import re
import threading
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
MODULES = ("conv", "pool", "batchnorm", "dense", "activation", "loss", "optim", "augment", "quant")
# NVRTC options; the tests give nvcc the same ones. No fast-math: NaN and rounding behaviour is specified.
OPTIONS = ("-std=c++17",)

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.MULTILINE)
_lock = threading.Lock()
_modules: dict[tuple[int, str], Any] = {}  # (device id, stem) -> cupy.RawModule
_functions: dict[tuple[int, str, str], Any] = {}  # (device id, stem, kernel) -> cupy.RawKernel


def source(stem: str) -> str:
    """The self-contained source of module ``stem``: the .cu file with its local headers pasted in."""
    if stem not in MODULES:
        raise ValueError(f"unknown CUDA module {stem!r}; expected one of {', '.join(MODULES)}")
    seen: set[str] = set()

    def expand(path: pathlib.Path) -> str:
        text = path.read_text()

        def paste(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in seen:
                return f"// {name} already included"
            seen.add(name)
            header = HERE / name
            if not header.is_file():
                raise FileNotFoundError(f"{path.name} includes {name!r}, which is not in {HERE}")
            return f"// ---- begin {name}\n{expand(header)}\n// ---- end {name}"

        return _INCLUDE.sub(paste, text).replace("#pragma once", "")

    return expand(HERE / f"{stem}.cu")


def function(stem: str, kernel: str) -> Any:
    """The compiled kernel ``kernel`` of module ``stem`` for the current device (compiled on first use)."""
    import cupy

    device = cupy.cuda.Device().id
    key = (device, stem, kernel)
    fn = _functions.get(key)
    if fn is not None:
        return fn
    with _lock:
        module = _modules.get((device, stem))
        if module is None:
            module = cupy.RawModule(code=source(stem), options=OPTIONS)
            _modules[(device, stem)] = module
        fn = module.get_function(kernel)
        _functions[key] = fn
    return fn
