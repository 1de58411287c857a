"""The Numba backend: every kernel as ``@njit(parallel=True, cache=True)`` loops on NumPy arrays.

Kernels live in one file per family (conv, pool, batchnorm, dense, activation, loss, optim; the GEMM that conv
and dense share in gemm.py, conv's direct loops for few-tap convs in conv_direct.py and its in-place stride-1
GEMM in conv_indirect.py). Each file holds the compiled loops (``_name``), one plain Python function per
kernel, named like the Backend method, that allocates the outputs and calls them (the methods forwarding to
them are generated from the kernel table), and ``warmup_calls`` for :func:`warmup`. Importing this package
does not import Numba; :func:`create` does. A kernel compiles on its first call per dtype (seconds, once per
machine: ``cache=True`` keeps the machine code in ``__pycache__`` next to the sources, or under
``NUMBA_CACHE_DIR``); :func:`warmup` does that up front and reports the cost. No kernel uses fastmath, so IEEE
NaN/inf rules hold (docs/design.md §3); the GEMM's multiply-adds are explicit ``llvm.fma`` calls (gemm.py: one
rounding per multiply-add, as the C++ backend's FMA micro-kernels). Threads: Numba's pool, started with
``NUMBA_NUM_THREADS`` threads (default: the CPUs), of which ``cnnkern.set_num_threads`` uses 1 to that many;
:func:`configure_threading` makes its OpenMP workers sleep when idle (docs/threads.md). Every kernel's result
is independent of the thread count: each reduction is cut into parts that depend on the problem alone
(conv.py's DW_TASKS runs, one task per channel or per row), added in a fixed order."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import time
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ...kernel_methods import forwarder, install
from ...kernels import BASIC, FAMILIES
from ..base import Backend

if TYPE_CHECKING:
    from typing_extensions import TypeAlias

    MakeArray: TypeAlias = Callable[..., np.ndarray]
    """``rand(*shape)`` / ``zeros(*shape)``: an array of the dtype being warmed up."""
    WarmupCalls: TypeAlias = dict[str, Callable[[], object]]
    """A family module's ``warmup_calls``: kernel name -> a closure calling it once."""

MIN_NUMBA = (0, 68)  # gemm.py's micro-kernel is LLVM IR through numba.extending.intrinsic: tested on 0.68
# one module per family of the table (the stem rule), the GEMM that conv and dense share and conv's direct
# loops (listed so that info(), warmup and the cache checks see their compiled loops)
_FAMILIES = ("gemm", "conv_direct", "conv_indirect") + FAMILIES
# fused kernels with compiled loops of their own (conv_pool.py); the others are the base class compositions
FUSED = ("conv2d_act_maxpool_forward", "conv2d_act_maxpool_backward")


def probe() -> str | None:
    """None if Numba can run the kernels here, else why not and how to fix it."""
    if importlib.util.find_spec("numba") is None:
        return "numba not installed: pip install cnnkern[numba]"
    try:
        import numba
    except Exception as exc:  # a broken numba (e.g. built for another NumPy) must not break the registry
        return f"numba failed to import ({type(exc).__name__}: {exc}): pip install --upgrade numba"
    version = tuple(int(part) for part in numba.__version__.split(".")[:2])
    if version < MIN_NUMBA:
        need = ".".join(map(str, MIN_NUMBA))
        return f"numba {numba.__version__} is older than {need}: pip install 'numba>={need}'"
    return None


# Put in the environment while Numba starts its threading layer, unless already set: OpenMP workers that
# sleep as soon as a parallel loop ends instead of spinning (GNU OpenMP's default spins some 300,000 rounds,
# Intel's 200 ms). Spinning workers starve a peer that shares its core with another process, and every
# parallel loop then waits for the scheduler to run that peer: with one core busy elsewhere the classic CNN's
# training step took 30 times its quiet time on 2 cores (issue 12), 1 to 2 times with these. The price is a
# futex wake-up per parallel loop: on an otherwise idle machine the step measured about 13 ms against 8.5 ms
# spinning (2-core VM, batch 32); set OMP_WAIT_POLICY=ACTIVE to prefer that. The variables are removed
# again afterwards, and only take effect if this is the process's first load of an OpenMP runtime: a process
# runs one GNU OpenMP runtime, the first loaded, with the settings it read then (PyTorch imported later
# shares the one Numba loaded; imported earlier, its own serves Numba's loops: preloaded_openmp).
THREADING_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
# How the threading layer was started, for info(): None until configure_threading ran.
_idle_wait: str | None = None


def configure_threading() -> None:
    """Start Numba's threading layer with :data:`THREADING_DEFAULTS` (those the user has not set); a no-op
    once the layer runs (it was then started by an earlier call, or by the user's own Numba code)."""
    import numba

    global _idle_wait
    try:
        numba.threading_layer()
        if _idle_wait is None:  # started before cnnkern could configure it: OpenMP's defaults hold
            _idle_wait = "unconfigured (Numba's threading layer was started outside cnnkern)"
        return  # already started: its settings are fixed
    except ValueError:  # "Threading layer is not initialized."
        pass
    added = {k: v for k, v in THREADING_DEFAULTS.items() if k not in os.environ}
    user = os.environ.get("OMP_WAIT_POLICY")
    loaded = preloaded_openmp()
    if user:
        _idle_wait = f"OMP_WAIT_POLICY={user} (yours)"
    elif loaded:
        # it read its settings when it loaded; Numba's loops bind to it (global symbols come first)
        _idle_wait = (
            f"the defaults of {loaded}, loaded before Numba started (e.g. by import torch): set "
            "OMP_WAIT_POLICY=PASSIVE before Python starts for passive waits"
        )
    else:
        _idle_wait = "passive"
    os.environ.update(added)
    try:
        numba.get_num_threads()  # launches the threading layer, which reads the variables as it loads
    finally:
        for k in added:
            os.environ.pop(k, None)


def preloaded_openmp() -> str | None:
    """The file of an OpenMP runtime already in the process's global symbol scope, or None. PyTorch loads its
    own libgomp that way; Numba's OpenMP layer, started later, then runs its loops on that runtime (a global
    definition of GOMP_parallel wins over the one the layer brings), with the settings it read at its load."""
    import ctypes

    class DlInfo(ctypes.Structure):
        _fields_ = [
            ("fname", ctypes.c_char_p),
            ("fbase", ctypes.c_void_p),
            ("sname", ctypes.c_char_p),
            ("saddr", ctypes.c_void_p),
        ]

    try:
        process = ctypes.CDLL(None)
        entry = ctypes.cast(process.GOMP_parallel, ctypes.c_void_p)
        info = DlInfo()
        found = process.dladdr(entry, ctypes.byref(info))
    except (AttributeError, OSError, TypeError):
        return None  # no global OpenMP runtime, or no dladdr in this libc
    return info.fname.decode(errors="replace") if found and info.fname else "an OpenMP runtime"


def create() -> NumbaBackend:
    configure_threading()
    return NumbaBackend()


class NumbaBackend(Backend):
    """Numba kernels on NumPy arrays, float32 and float64."""

    name = "numba"
    dtypes: tuple[str, ...] = ("float32", "float64")
    array_module = "numpy"

    def __init__(self) -> None:
        self._k: dict[str, ModuleType] = {
            family: importlib.import_module(f"{__name__}.{family}") for family in _FAMILIES
        }

    def _dispatchers(self) -> list[Any]:
        """Every compiled-loop function of the kernel modules (the Numba dispatchers)."""
        from numba.core.registry import CPUDispatcher

        return [
            obj
            for module in self._k.values()
            for obj in vars(module).values()
            if isinstance(obj, CPUDispatcher) and obj.__module__ == module.__name__
        ]

    def info(self) -> dict[str, Any]:
        import numba

        # the parallel loops are the ones called from Python; helpers (the GEMM tile, ...) compile inside them
        dispatchers = [d for d in self._dispatchers() if d.targetoptions.get("parallel")]
        done = sum(1 for d in dispatchers if d.signatures)
        return {
            "numba": numba.__version__,
            "threads": numba.get_num_threads(),
            "max_threads": self.max_threads(),
            "layer": numba.threading_layer(),
            "idle_wait": _idle_wait or "not started",
            "compiled": f"{done}/{len(dispatchers)}",  # loops compiled or loaded in this process
        }

    # threads: cnnkern.set_num_threads / get_num_threads (cnnkern/threads.py)
    @staticmethod
    def num_threads() -> int:
        import numba

        return numba.get_num_threads()

    @staticmethod
    def max_threads() -> int:
        """The threads Numba's pool was started with (NUMBA_NUM_THREADS): set_num_threads' upper bound."""
        import numba

        return numba.config.NUMBA_NUM_THREADS

    @classmethod
    def thread_count_error(cls, n: int) -> str | None:
        """None if the pool can run ``n`` threads, else why not and what to do."""
        top = cls.max_threads()
        if n <= top:
            return None
        env = os.environ.get("NUMBA_NUM_THREADS")
        how = f"NUMBA_NUM_THREADS={env}" if env else "NUMBA_NUM_THREADS unset: the CPU count"
        return (
            f"n={n} exceeds the numba backend's thread pool, which numba started with {top} threads ({how}); "
            f"numba cannot grow it: set NUMBA_NUM_THREADS={n} (or more) in the environment before numba is "
            f"first imported, or use at most {top} threads with numba (set_num_threads(n, backend='cpp') "
            "sets the cpp backend alone)"
        )

    @classmethod
    def set_num_threads(cls, n: int) -> None:
        import numba

        err = cls.thread_count_error(n)
        if err is not None:
            raise ValueError(err)
        numba.set_num_threads(n)

    # fused conv + activation + max pool: conv_pool.py for a one-channel first layer, else the composition
    def conv2d_act_maxpool_forward(
        self,
        x: np.ndarray,
        w: np.ndarray,
        b: np.ndarray | None = None,
        *,
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        groups: int,
        activation: str | None = None,
        alpha: float = 0.01,
        pool_kernel: Sequence[int],
        pool_stride: Sequence[int],
        pool_padding: Sequence[int],
        pool_dilation: Sequence[int],
        pool_ceil_mode: bool,
        need_argmax: bool = True,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        conv: dict[str, Any] = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        pool = (pool_kernel, pool_stride, pool_padding, pool_dilation, pool_ceil_mode)
        fused = self._k["conv_pool"]
        if fused.applies(x, w, **conv):
            return fused.conv2d_act_maxpool_forward(x, w, b, activation, alpha, *pool, need_argmax)
        return super().conv2d_act_maxpool_forward(
            x,
            w,
            b,
            **conv,
            activation=activation,
            alpha=alpha,
            pool_kernel=pool_kernel,
            pool_stride=pool_stride,
            pool_padding=pool_padding,
            pool_dilation=pool_dilation,
            pool_ceil_mode=pool_ceil_mode,
            need_argmax=need_argmax,
        )

    def conv2d_act_maxpool_backward(
        self,
        dy: np.ndarray,
        y: np.ndarray,
        argmax: np.ndarray,
        x: np.ndarray,
        w: np.ndarray,
        *,
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        groups: int,
        activation: str | None = None,
        alpha: float = 0.01,
        need_dx: bool,
        need_dw: bool,
        need_db: bool,
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        conv: dict[str, Any] = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        fused = self._k["conv_pool"]
        if not need_dx and fused.applies(x, w, **conv):  # dx: a first layer never needs it
            return (None,) + fused.conv2d_act_maxpool_backward(
                dy, y, argmax, x, w, activation, alpha, need_dw, need_db
            )
        return super().conv2d_act_maxpool_backward(
            dy,
            y,
            argmax,
            x,
            w,
            **conv,
            activation=activation,
            alpha=alpha,
            need_dx=need_dx,
            need_dw=need_dw,
            need_db=need_db,
        )


# every unfused kernel forwards to the function of the same name in numba/<family>.py, its arguments
# positionally in the table's order
for _kernel in BASIC:
    install(NumbaBackend, forwarder(_kernel, f"self._k[{_kernel.family!r}].{_kernel.name}"))


def _call(be: Backend, name: str, args: list[np.ndarray], kwargs: dict[str, Any]) -> object:
    return getattr(be, name)(*args, **kwargs)


def _warmup_calls(be: Backend, dtype: np.dtype) -> WarmupCalls:
    """One closure per kernel, in the table's order (its unfused kernels, then FUSED), from the
    ``warmup_calls`` of each family module: tiny inputs that reach every compiled loop. Run in that order,
    each backward uses what its forward (run just before) saved, so every compile is charged to its
    kernel."""
    rng = np.random.default_rng(0)

    def rand(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    def zeros(*shape: int) -> np.ndarray:
        return np.zeros(shape, dtype)

    calls: WarmupCalls = {}
    for family in _FAMILIES:
        module = importlib.import_module(f"{__name__}.{family}")
        if hasattr(module, "warmup_calls"):
            calls.update(module.warmup_calls(be, rand, zeros))
    # an elementwise kernel of the table: a call on small arrays, its settings at their front-door defaults
    for kernel in BASIC:
        if kernel.recipe == "elementwise" and kernel.name not in calls:
            arrays = [rand(2, 3, 5) for arg in kernel.args if arg.positional]
            settings = {arg.name: arg.front for arg in kernel.args if not arg.positional}
            calls[kernel.name] = functools.partial(_call, be, kernel.name, arrays, settings)
    order = [kernel.name for kernel in BASIC] + list(FUSED)
    missing = [name for name in order if name not in calls]
    if missing:
        raise RuntimeError(f"numba kernels without a warm-up call in their family module: {missing}")
    return {name: calls[name] for name in order}


def warmup(dtypes: Iterable[str] = ("float32",)) -> dict[str, float]:
    """Compile (or load from the cache) every kernel for each dtype by calling it once on tiny inputs.

    Returns ``{kernel: seconds}`` in the table's order (its unfused kernels), then FUSED, the seconds summed
    over ``dtypes``: the compile cost on a cold cache, the cache-load cost on a warm one, and (negligibly)
    the tiny call itself.
    """
    from .. import get

    be = get("numba")
    for dtype in dtypes:
        if dtype not in be.dtypes:
            raise ValueError(f"dtypes must be drawn from {be.dtypes}, got {dtype!r}")
    seconds = dict.fromkeys([kernel.name for kernel in BASIC] + list(FUSED), 0.0)
    for dtype in dtypes:
        calls = _warmup_calls(be, np.dtype(dtype))
        for kernel in seconds:
            start = time.perf_counter()
            calls[kernel]()
            seconds[kernel] += time.perf_counter() - start
    return seconds
