"""Output and scratch arrays backed by a cache of recycled memory blocks (the numba side of
csrc/runtime/alloc.h).

An array of a few MB allocated fresh each call (conv1's output at batch 128 is 11 MB) is mmap'ed by the C
library, page-faulted in 4 KiB at a time on first write and unmapped again when NumPy frees it; in a
training loop that repeats the same shapes every step that costs as much as the kernel itself (conv1's
forward measured 9 ms inside the step against 4.6 ms when timed alone). :func:`empty` hands out arrays of at
least MIN_BYTES over blocks kept in a cache keyed by exact size. The array's memory is owned by a small
holder object, the base of the array and of every view of it, so a block goes back to the cache only when
the last array that can see it is gone. The cache keeps at most MAX_IDLE_BYTES of idle blocks; smaller
arrays take NumPy's own allocator. Contents are uninitialised, as with numpy.empty.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
from numpy.typing import DTypeLike

MIN_BYTES = 1 << 18  # 256 KiB: below this malloc reuses its heap anyway
MAX_IDLE_BYTES = 1 << 28  # 256 MiB of idle blocks at most

_lock = threading.Lock()
_idle: dict[int, list[np.ndarray]] = {}  # nbytes -> [uint8 arrays]
_idle_bytes = 0


class _Holder:
    """Owns one block while an array over it lives; returns it to the cache when collected."""

    __slots__ = ("block", "__array_interface__")

    def __init__(self, block: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.block = block
        self.__array_interface__ = {
            "shape": shape,
            "typestr": dtype.str,
            "data": (block.ctypes.data, False),
            "version": 3,
        }

    def __del__(self) -> None:
        global _idle_bytes
        with _lock:
            if _idle_bytes + self.block.size <= MAX_IDLE_BYTES:
                _idle.setdefault(self.block.size, []).append(self.block)
                _idle_bytes += self.block.size


def empty(shape: Sequence[int], dtype: DTypeLike) -> np.ndarray:
    """A C-contiguous, uninitialised array like numpy.empty, from the block cache when it is large."""
    global _idle_bytes
    dt = np.dtype(dtype)
    dims = tuple(int(d) for d in shape)
    nbytes = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
    if nbytes < MIN_BYTES:
        return np.empty(dims, dt)
    with _lock:
        blocks = _idle.get(nbytes)
        block = blocks.pop() if blocks else None
        if block is not None:
            _idle_bytes -= nbytes
    if block is None:
        block = np.empty(nbytes, np.uint8)
    return np.asarray(_Holder(block, dims, dt))


def idle_bytes(release: bool = False) -> int:
    """Bytes of idle blocks held by the cache; frees them all when ``release``."""
    global _idle_bytes
    with _lock:
        held = _idle_bytes
        if release:
            _idle.clear()
            _idle_bytes = 0
    return held
