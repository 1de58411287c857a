"""The CUDA backend: hand-written kernels in ``*.cu`` files, compiled at run time by NVRTC through CuPy.

Arrays are CuPy arrays (``array_module = "cupy"``), float32, C-contiguous, as :mod:`cnnkern.ops` delivers
them. Each method computes output shapes, allocates outputs and launches kernels from :mod:`.loader`; all
kernels are queued on CuPy's current stream (nothing here synchronises), so a sequence of calls can be
captured into a CUDA graph (:mod:`.graph`). Integer kernel arguments are passed as ``numpy.int64``, float
ones as ``numpy.float32`` (``numpy.float64`` for the one ``double``), matching the kernels' parameters.

The fused kernels of the table this backend implements itself, to save launches (the others are
:class:`~cnnkern.backends.base.Backend`'s compositions of the unfused kernels):

* ``conv2d_bias_act_forward`` / ``dense_bias_act_forward``: bias and activation applied in the GEMM's
  epilogue (``activation`` None or one of ``ACTIVATIONS``), equal to ``activation_forward`` of the unfused
  output;
* ``batchnorm2d_act_forward``: the activation applied in batch norm's normalising pass;
* ``adam_update_multi``: one Adam step over lists of parameters in a single launch; the step count may be
  a device array, so that a captured training step advances it on every replay.

Reductions (bias and weight gradients, batch-norm statistics, the mean loss) are split into a fixed number
of chunks summed in a fixed order, never with float atomics: results are bitwise reproducible, and the split
counts do not depend on the GPU model.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._typing import BackendArray
from ...kernel_methods import install
from ...kernels import TABLE
from ..base import Backend
from . import loader
from .activation import ActivationKernels
from .augment import AugmentKernels
from .batchnorm import BatchnormKernels
from .conv import ConvKernels
from .dense import DenseKernels
from .launch import (
    _BLOCK,
    _channel_splits,
    _check_gemm,
    _check_grid,
    _gemm_splits,
    _grid_1d,
    _i,
    elementwise_launcher,
)
from .loss import LossKernels
from .optim import OptimKernels
from .pool import PoolKernels

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

# what the tests reach through this package
__all__ = ["CudaBackend", "_channel_splits", "_check_gemm", "_check_grid", "_gemm_splits", "create", "probe"]


def probe() -> str | None:
    """None if the backend can run here, else why not (and the fix)."""
    if importlib.util.find_spec("cupy") is None:
        return "cupy not installed: pip install cnnkern[cuda12] (or cnnkern[cuda13])"
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, driver too old for the CUDA runtime, broken install...
        return f"no CUDA device ({type(exc).__name__}: {exc})"
    if count == 0:
        return "no CUDA device (cupy sees 0 devices)"
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as exc:
        return (
            f"NVRTC, which compiles the kernels, cannot be loaded ({type(exc).__name__}: {exc}); install the "
            "CUDA toolkit or the nvidia-cuda-nvrtc wheel matching your cupy"
        )
    return None


def create() -> CudaBackend:
    return CudaBackend()


class CudaBackend(
    ConvKernels,
    PoolKernels,
    BatchnormKernels,
    DenseKernels,
    ActivationKernels,
    LossKernels,
    OptimKernels,
    AugmentKernels,
    Backend,
):
    """The CUDA backend: one mixin of launchers per family (``cuda/<stem>.py`` beside ``<stem>.cu``) and,
    here, the only methods that touch CUDA directly."""

    name = "cuda"
    dtypes = ("float32",)
    array_module = "cupy"

    def __init__(self) -> None:
        import cupy

        self._cp = cupy
        self._adam_tables = {}  # pointer tables for adam_update_multi, keyed by the arrays' pointers

    # kernel lookup, launch, array addresses and uploads: the only places that touch CUDA directly (the
    # tests' CPU emulator overrides _kernel, _address and _upload)
    _kernel = staticmethod(loader.function)

    def _launch(
        self, stem: str, kernel: str, grid: tuple[int, ...], args: tuple[Any, ...], block: int = _BLOCK
    ) -> None:
        self._kernel(stem, kernel)(grid, (block,), args)

    @staticmethod
    def _address(a: BackendArray) -> int:
        return a.data.ptr

    def info(self) -> dict[str, Any]:
        cp = self._cp
        dev = cp.cuda.Device()
        props = cp.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"]
        return {
            "device": name.decode() if isinstance(name, bytes) else name,
            "compute_capability": dev.compute_capability,
            "sms": props["multiProcessorCount"],
            "cupy": cp.__version__,
        }

    def synchronize(self) -> None:
        self._cp.cuda.Device().synchronize()

    def _empty(self, shape: int | tuple[int, ...], dtype: DTypeLike = np.float32) -> BackendArray:
        return self._cp.empty(shape, dtype=dtype)

    def _channel_sum(
        self, stem: str, x: BackendArray, out: BackendArray, n: int, k: int, pq: int
    ) -> BackendArray:
        """out[k] = sum over (n, pq) of x (n, k, pq), two deterministic launches (reduce.cuh, which module
        ``stem`` includes)."""
        splits, chunk = _channel_splits(n * pq, k)
        partial = out if splits == 1 else self._empty(k * splits)
        self._launch(stem, "channel_partial_sum", (k, splits), (x, partial, _i(n), _i(k), _i(pq), _i(chunk)))
        if splits > 1:
            self._launch(stem, "sum_partials", _grid_1d(k), (partial, out, _i(k), _i(splits)))
        return out

    def _upload(self, host: np.ndarray) -> BackendArray:
        """A device copy of a NumPy array from CuPy's default memory pool, so that a cached table outlives any
        private pool active at the time (graph.CapturedStep allocates from its own while it warms up)."""
        cp = self._cp
        with cp.cuda.using_allocator(cp.get_default_memory_pool().malloc):
            return cp.asarray(host)


# the kernels with the table's elementwise recipe and no launcher written in a mixin: the generic one
for _kernel in TABLE.values():
    if _kernel.recipe == "elementwise" and getattr(CudaBackend, _kernel.name) is getattr(
        Backend, _kernel.name
    ):
        install(CudaBackend, elementwise_launcher(_kernel))
