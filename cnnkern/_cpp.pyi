"""Type stub of the compiled extension ``cnnkern._cpp`` (csrc/), the C++ SIMD backend.

Every kernel (one per entry of cnnkern/kernels.py's table) has exactly the signature of the
:class:`cnnkern.backends.base.Backend` method of the same name, in the canonical forms the front door
(:mod:`cnnkern.ops`) passes: float32 C-contiguous arrays (a float64 array is refused with ``TypeError``),
``(h, w)`` tuples for stride / dilation / kernel_size, conv padding as ``(top, bottom, left, right)``, pool
padding as ``(ph, pw)``. Outputs are new arrays; only the optimizer updates and batch norm's running
statistics write in place. The GIL is released while a kernel computes.
"""

from collections.abc import Callable
from typing import Any

# --- run-time settings (module.cpp) -------------------------------------------------------------------

def simd() -> str:
    """The SIMD path in use: 'scalar', 'avx2' or 'avx512' (CNNKERN_SIMD forces one at import)."""

def set_simd(path: str) -> None:
    """Switch the SIMD path; RuntimeError if this CPU cannot run it, ValueError for an unknown name."""

def supported_simd() -> list[str]:
    """The SIMD paths this CPU can run, from 'scalar' up."""

def num_threads() -> int:
    """Threads of the kernel thread pool, the calling thread included (CNNKERN_NUM_THREADS, default: the CPUs
    this process may use). The pool starts at its first use."""

def max_threads() -> int:
    """The largest pool set_num_threads accepts: 4 x usable_cpus()."""

def threads_pinned() -> bool:
    """Whether the pool's workers are pinned one per CPU of the affinity mask (docs/threads.md, "Placement"):
    on while the pool has no more threads than CPUs, unless CNNKERN_PIN_THREADS=0."""

def usable_cpus() -> int:
    """CPUs in this process's affinity mask."""

def env_threads() -> int:
    """CNNKERN_NUM_THREADS as parsed at import (0 if unset or empty); a value that is not an integer from 1 to
    max_threads() makes the import fail with its message."""

def set_num_threads(n: int) -> None:
    """Resize the pool to ``n`` threads after the job in flight ends. ``TypeError`` unless ``n`` is an int,
    ``ValueError`` outside [1, max_threads()] (before any thread starts), ``RuntimeError`` if a thread cannot
    start: the ones started are joined and the previous size is kept. Results do not depend on the size
    (docs/threads.md)."""

def output_cache(release: bool = False) -> int:
    """Bytes of idle output blocks kept for reuse (csrc/runtime/alloc.h: outputs of 256 KiB or more come
    from a cache of recycled blocks, at most 256 MiB idle, so a training loop does not page-fault fresh
    memory every step); ``release=True`` frees them."""

# --- the kernels (csrc/kernels/<stem>.cpp) ---------------------------------------------------------------
# One function per kernel of cnnkern/kernels.py's table, with the Backend method's signature: backends/cpp.py
# binds them from the table by name, and tests/test_kernel_table.py checks the built module's own signatures
# (pybind11's) against the table, so they are not restated here.

# --- conv algorithm choice (csrc/kernels/conv_algo.cpp, docs/autotune.md) ----------------------------------
# conv2d_bias_act_forward_algo, conv2d_backward_algo, conv2d_act_maxpool_forward_algo and
# conv2d_act_maxpool_backward_algo are those kernels with a required keyword ``algo`` (None / 'auto': the
# fixed heuristics; a name conv_algos lists; another: ValueError naming the ones that can run).

def conv_algos(
    x_shape: tuple[int, int, int, int],
    w_shape: tuple[int, int, int, int],
    *,
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
    groups: int,
    backward: bool,
) -> list[str]:
    """The conv algorithms that can run this geometry on this SIMD path, the heuristics' choice first."""

def __getattr__(name: str) -> Callable[..., Any]: ...
