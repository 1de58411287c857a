"""What every CUDA launcher shares: block and tile sizes (those of the kernels' headers), argument
conversion to the kernels' C types, grid sizes and the deterministic split of reductions, the base of the
family mixins (:class:`Launchers`), and the launcher generated for every ``elementwise`` kernel of the table
(:func:`elementwise_launcher`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._typing import BackendArray
from ...kernel_methods import method
from ...kernels import Kernel
from ..base import ACTIVATIONS

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

_ACT = {None: 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}  # ACT_* in common.cuh
_BLOCK = 256  # threads per block everywhere (GEMM_THREADS in gemm.cuh)
_TILE = 64  # GEMM_BM == GEMM_BN
_DEPTH = 16  # GEMM_BK
_MAX_BLOCKS = 4096  # grid of the grid-stride kernels
_SPLIT_TARGET = 1024  # blocks a split reduction aims for (fixed: results must not depend on the device)
_MAX_DIM = 2**31 - 1  # GEMM sizes are int inside the kernels
_MAX_GRID_YZ = 65535


def _i(v: int | bool | np.integer) -> np.int64:
    return np.int64(v)


def _f(v: float) -> np.float32:
    return np.float32(v)


def _ints(*values: int | bool | np.integer) -> tuple[np.int64, ...]:
    """Kernel `long long` arguments."""
    return tuple(np.int64(v) for v in values)


def _floats(*values: float) -> tuple[np.float32, ...]:
    """Kernel `float` arguments."""
    return tuple(np.float32(v) for v in values)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _act_code(activation: str | None) -> int:
    if activation not in _ACT:
        raise ValueError(f"activation must be None or one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    return _ACT[activation]


def _grid_1d(n: int) -> tuple[int]:
    """Grid for a grid-stride loop over n items."""
    return (max(1, min(_cdiv(n, _BLOCK), _MAX_BLOCKS)),)


def _check_gemm(op: str, **sizes: int) -> None:
    for name, value in sizes.items():
        if value > _MAX_DIM:
            raise ValueError(f"{op}: {name} = {value} exceeds the CUDA kernels' limit of 2**31 - 1")


def _check_grid(op: str, what: str, value: int) -> None:
    if value > _MAX_GRID_YZ:
        raise ValueError(f"{op}: {what} = {value} exceeds the CUDA grid limit of {_MAX_GRID_YZ}")


def _gemm_splits(depth: int, tiles: int, cap: int) -> tuple[int, int]:
    """Split a reduction of length ``depth`` over a GEMM of ``tiles`` output tiles so the grid has about
    _SPLIT_TARGET blocks, each split at least 8 k-tiles deep; returns (splits, chunk), chunk a multiple
    of 16."""
    splits = max(1, min(_SPLIT_TARGET // max(tiles, 1), _cdiv(depth, 8 * _DEPTH), cap))
    chunk = _cdiv(_cdiv(depth, splits), _DEPTH) * _DEPTH
    return _cdiv(depth, chunk), chunk


def _channel_splits(count: int, channels: int) -> tuple[int, int]:
    """Chunks per channel for a per-channel sum of ``count`` values: about _SPLIT_TARGET blocks in all,
    each chunk at least 16 values per thread; returns (splits, chunk)."""
    splits = max(1, min(_SPLIT_TARGET // channels, _cdiv(count, 16 * _BLOCK), _MAX_GRID_YZ))
    chunk = _cdiv(count, splits)
    return _cdiv(count, chunk), chunk


class Launchers:
    """Base of the family mixins (``cuda/<stem>.py``): declares, for the type checker, what they use of
    :class:`~cnnkern.backends.cuda.CudaBackend`, which defines all of it (nothing here exists at run time)."""

    _cp: Any  # the cupy module

    if TYPE_CHECKING:

        def _launch(
            self, stem: str, kernel: str, grid: tuple[int, ...], args: tuple[Any, ...], block: int = _BLOCK
        ) -> None: ...

        def _empty(self, shape: int | tuple[int, ...], dtype: DTypeLike = np.float32) -> BackendArray: ...

        def _channel_sum(
            self, stem: str, x: BackendArray, out: BackendArray, n: int, k: int, pq: int
        ) -> BackendArray: ...

        @staticmethod
        def _address(a: BackendArray) -> int: ...

        def _upload(self, host: np.ndarray) -> BackendArray: ...


def elementwise_launcher(kernel: Kernel) -> Callable[..., Any]:
    """The launcher of a kernel whose table entry has the ``elementwise`` recipe, so such a kernel needs
    only its ``.cu`` function: ``extern "C" __global__ void <name>(const float* <each positional array>,
    float* out, i64 total, float <each keyword>)`` in ``<family>.cu``, writing ``out`` of the first array's
    shape (a grid-stride loop over ``total`` elements)."""
    arrays = [arg.name for arg in kernel.args if arg.positional]
    floats = [arg.name for arg in kernel.args if not arg.positional]
    body = (
        f"out = self._empty({arrays[0]}.shape); "
        f"self._launch({kernel.family!r}, {kernel.name!r}, _grid_1d({arrays[0]}.size), "
        f"({', '.join(arrays)}, out, _i({arrays[0]}.size), {''.join(f'_f({n}), ' for n in floats)})); "
        "return out"
    )
    return method(kernel, body, {"_grid_1d": _grid_1d, "_i": _i, "_f": _f})
