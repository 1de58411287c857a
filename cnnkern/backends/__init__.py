"""Backend registry: find backends by name, import them lazily, choose the default.

Each backend module (``cnnkern.backends.<module>``) defines ``probe() -> str | None`` (``None`` if it can
run here, else the reason and the fix) and ``create() -> Backend``. Selection order: an explicit argument,
then :func:`set_backend`, then the ``CNNKERN_BACKEND`` environment variable, then ``auto`` (cuda if usable,
else cpp, else numba, else reference). A backend asked for by name never falls back to another.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import TYPE_CHECKING, Literal, overload

from ..errors import BackendUnavailableError
from .base import KERNELS, Backend

if TYPE_CHECKING:  # for get()'s overloads: the class each CPU backend's name gives
    from .cpp import CppBackend
    from .numba import NumbaBackend
    from .reference import ReferenceBackend

NAMES = ("reference", "cpp", "numba", "cuda")
AUTO_ORDER = ("cuda", "cpp", "numba", "reference")
_MODULES = {
    "reference": "cnnkern.backends.reference",
    "cpp": "cnnkern.backends.cpp",
    "numba": "cnnkern.backends.numba",
    "cuda": "cnnkern.backends.cuda",
}

_lock = threading.Lock()
_instances: dict[str, Backend] = {}
_probes: dict[str, str | None] = {}
_default: str | Backend | None = None

__all__ = ["Backend", "KERNELS", "NAMES", "available", "probe", "get", "set_backend", "current", "resolve"]


def _check_name(name: object) -> None:
    if not isinstance(name, str) or name not in NAMES + ("auto",):
        raise ValueError(f"backend must be one of {', '.join(NAMES + ('auto',))}, got {name!r}")


def probe(name: str) -> str | None:
    """``None`` if backend ``name`` can run here, else a one-line reason (with the fix where there is one)."""
    _check_name(name)
    if name == "auto":
        return None
    with _lock:
        if name not in _probes:
            try:
                module = importlib.import_module(_MODULES[name])
                _probes[name] = module.probe()
            except Exception as exc:  # a broken install must not break `import cnnkern`
                _probes[name] = f"{_MODULES[name]} failed to import: {type(exc).__name__}: {exc}"
        return _probes[name]


def available() -> list[str]:
    """Names of the backends that can run on this machine, in registry order."""
    return [n for n in NAMES if probe(n) is None]


@overload
def get(name: Literal["cpp"]) -> CppBackend: ...
@overload
def get(name: Literal["numba"]) -> NumbaBackend: ...
@overload
def get(name: Literal["reference"]) -> ReferenceBackend: ...
@overload
def get(name: str) -> Backend: ...


def get(name: str) -> Backend:
    """The backend instance named ``name`` ('auto' picks the best usable one); raises
    :class:`BackendUnavailableError` with the probe's reason if it cannot run here."""
    _check_name(name)
    if name == "auto":
        for candidate in AUTO_ORDER:
            if probe(candidate) is None:
                return get(candidate)
    reason = probe(name)
    if reason is not None:
        raise BackendUnavailableError(f"backend {name!r} is unavailable: {reason}")
    with _lock:
        if name not in _instances:
            _instances[name] = importlib.import_module(_MODULES[name]).create()
        return _instances[name]


def set_backend(name: str | Backend | None) -> None:
    """Make ``name`` (or a Backend instance, or None to go back to the environment/auto) the default."""
    global _default
    if name is None or isinstance(name, Backend):
        _default = name
        return
    get(name)  # fail now, not at the first kernel call
    _default = name


def current() -> Backend:
    """The default backend: :func:`set_backend`, else ``CNNKERN_BACKEND``, else auto."""
    if isinstance(_default, Backend):
        return _default
    if _default is not None:
        return get(_default)
    env = os.environ.get("CNNKERN_BACKEND", "").strip()
    if env:
        if env not in NAMES + ("auto",):
            raise ValueError(f"CNNKERN_BACKEND must be one of {', '.join(NAMES + ('auto',))}, got {env!r}")
        return get(env)
    return get("auto")


def resolve(backend: str | Backend | None = None) -> Backend:
    """A Backend from a name, an instance, or None (the current default)."""
    if backend is None:
        return current()
    if isinstance(backend, Backend):
        return backend
    return get(backend)
