"""Thread counts of the CPU backends: :func:`cnnkern.set_num_threads` and :func:`cnnkern.get_num_threads`.

The cpp and numba backends each run their kernels on a thread pool (the calling thread included): cpp's
(csrc/runtime/threads.cpp) takes 1 to 4 x the usable CPUs and starts with ``CNNKERN_NUM_THREADS``
threads (default: the CPUs in the affinity mask); Numba's takes 1 to ``NUMBA_NUM_THREADS``, the size Numba
started its pool with, which cannot grow afterwards. The reference and cuda backends have no CPU pool. Every
kernel's result is bitwise the same at any thread count (docs/threads.md).
"""

from __future__ import annotations

import operator
from typing import Protocol, cast

from . import backends
from .errors import BackendUnavailableError

THREADED = ("cpp", "numba")  # the backends with a CPU thread pool


class _Pool(Protocol):
    """What the backends of THREADED add to Backend (CppBackend, NumbaBackend)."""

    name: str

    def num_threads(self) -> int: ...

    def thread_count_error(self, n: int) -> str | None: ...

    def set_num_threads(self, n: int) -> None: ...


def _count(n: int) -> int:
    if isinstance(n, bool):
        raise TypeError("n must be an int, got bool")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"n must be an int, got {type(n).__name__}") from None
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return n


def _name(backend: str | backends.Backend) -> str:
    name = backend if isinstance(backend, str) else getattr(backend, "name", None)
    if name not in THREADED:
        raise ValueError(
            f"backend {name if name is not None else backend!r} has no CPU thread pool: set_num_threads "
            f"applies to {' and '.join(THREADED)}"
        )
    return name


def set_num_threads(n: int, backend: str | backends.Backend | None = None) -> None:
    """Run the kernels of ``backend`` ('cpp' or 'numba'; None: each of them that can run here) on ``n``
    threads, the calling thread included.

    Every limit is checked before any pool changes: ``ValueError`` names the backend that cannot take ``n``
    (cpp: more than 4 x the CPUs this process may use; numba: more than the NUMBA_NUM_THREADS its pool was
    started with), ``TypeError`` for a non-integer. ``BackendUnavailableError`` if the named backend (or,
    with None, every one) cannot run here. The cpp count is global; numba's applies to the calling thread
    (Numba keeps it per thread).
    """
    n = _count(n)
    if backend is None:
        names = [name for name in THREADED if backends.probe(name) is None]
        if not names:
            reasons = "; ".join(f"{name}: {backends.probe(name)}" for name in THREADED)
            raise BackendUnavailableError(f"no backend with a CPU thread pool can run here ({reasons})")
    else:
        names = [_name(backend)]
    pools = [cast(_Pool, backends.get(name)) for name in names]
    for be in pools:
        err = be.thread_count_error(n)
        if err is not None:
            raise ValueError(err)
    for be in pools:
        be.set_num_threads(n)


def get_num_threads(backend: str | backends.Backend | None = None) -> int:
    """The threads ``backend`` (a name or instance; None: the current default backend) runs its kernels
    on; 1 for the backends without a CPU pool (reference runs on the calling thread, cuda on the GPU)."""
    be = backends.resolve(backend)
    return cast(_Pool, be).num_threads() if be.name in THREADED else 1
