"""The Numba backend: every kernel as ``@njit(parallel=True, cache=True)`` loops on NumPy arrays.

Kernels live in one file per family (conv, pool, batchnorm, dense, activation, loss, optim; the GEMM that
conv and dense share in gemm.py). Each file holds the compiled loops (``_name``), one plain Python
function per kernel, named like the Backend method, that allocates the outputs and calls them (the methods
forwarding to them are generated from the kernel table), and ``warmup_calls`` for :func:`warmup`. Importing
this package does not import Numba; :func:`create` does. A kernel compiles on its first call per dtype
(seconds, once per machine: ``cache=True`` keeps the machine code in ``__pycache__`` next to the sources,
or under ``NUMBA_CACHE_DIR``); :func:`warmup` does that up front and reports the cost. No kernel uses
fastmath, so IEEE NaN/inf rules hold (docs/design.md §3); the GEMM's multiply-adds are explicit ``llvm.fma``
calls (gemm.py: one rounding per multiply-add, as the C++ backend's FMA micro-kernels). Threads: Numba's
pool (``NUMBA_NUM_THREADS``).
"""

import importlib
import importlib.util
import time

import numpy as np

from ...kernels import BASIC, FAMILIES, forwarder, install
from ..base import Backend

MIN_NUMBA = (0, 68)  # gemm.py's micro-kernel is LLVM IR through numba.extending.intrinsic: tested on 0.68
# one module per family of the table (the stem rule), and the GEMM that conv and dense share
_FAMILIES = ("gemm",) + FAMILIES
# fused kernels with compiled loops of their own (conv_pool.py); the others are the base class compositions
FUSED = ("conv2d_act_maxpool_forward", "conv2d_act_maxpool_backward")


def probe():
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


def create():
    return NumbaBackend()


class NumbaBackend(Backend):
    """Numba kernels on NumPy arrays, float32 and float64."""

    name = "numba"
    dtypes = ("float32", "float64")
    array_module = "numpy"

    def __init__(self):
        self._k = {family: importlib.import_module(f"{__name__}.{family}") for family in _FAMILIES}

    def _dispatchers(self):
        """Every compiled-loop function of the kernel modules (the Numba dispatchers)."""
        from numba.core.registry import CPUDispatcher

        return [
            obj
            for module in self._k.values()
            for obj in vars(module).values()
            if isinstance(obj, CPUDispatcher) and obj.__module__ == module.__name__
        ]

    def info(self):
        import numba

        # the parallel loops are the ones called from Python; helpers (the GEMM tile, ...) compile inside them
        dispatchers = [d for d in self._dispatchers() if d.targetoptions.get("parallel")]
        done = sum(1 for d in dispatchers if d.signatures)
        return {
            "numba": numba.__version__,
            "threads": numba.get_num_threads(),
            "compiled": f"{done}/{len(dispatchers)}",  # loops compiled or loaded in this process
        }

    # fused conv + activation + max pool: conv_pool.py for a one-channel first layer, else the composition
    def conv2d_act_maxpool_forward(
        self,
        x,
        w,
        b=None,
        *,
        stride,
        padding,
        dilation,
        groups,
        activation=None,
        alpha=0.01,
        pool_kernel,
        pool_stride,
        pool_padding,
        pool_dilation,
        pool_ceil_mode,
        need_argmax=True,
    ):
        conv = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
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
        dy,
        y,
        argmax,
        x,
        w,
        *,
        stride,
        padding,
        dilation,
        groups,
        activation=None,
        alpha=0.01,
        need_dx,
        need_dw,
        need_db,
    ):
        conv = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
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


def _warmup_calls(be, dtype):
    """One closure per kernel, in the table's order (its unfused kernels, then FUSED), from the
    ``warmup_calls`` of each family module: tiny inputs that reach every compiled loop. Run in that order,
    each backward uses what its forward (run just before) saved, so every compile is charged to its
    kernel."""
    rng = np.random.default_rng(0)

    def rand(*shape):
        return rng.standard_normal(shape).astype(dtype)

    def zeros(*shape):
        return np.zeros(shape, dtype)

    calls = {}
    for family in _FAMILIES:
        module = importlib.import_module(f"{__name__}.{family}")
        if hasattr(module, "warmup_calls"):
            calls.update(module.warmup_calls(be, rand, zeros))
    order = [kernel.name for kernel in BASIC] + list(FUSED)
    missing = [name for name in order if name not in calls]
    if missing:
        raise RuntimeError(f"numba kernels without a warm-up call in their family module: {missing}")
    return {name: calls[name] for name in order}


def warmup(dtypes=("float32",)):
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
