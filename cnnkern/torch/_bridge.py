"""Tensors in and out of cnnkern's kernels: which backend runs a tensor, zero-copy NumPy views (CPU) and CuPy
arrays through DLPack (CUDA, on PyTorch's current stream), and the checks that turn a tensor a kernel cannot
take (dtype, device, layout) into an error naming the argument."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from .. import backends
from ..backends import Backend

FLOATS = (torch.float32, torch.float64)
# float32 on the CPU: the current backend (set_backend / CNNKERN_BACKEND / auto) where it runs on NumPy
# arrays, else the first of these that loads (auto picks cuda on a GPU machine, which takes CuPy arrays).
_CPU_ORDER = ("cpp", "numba", "reference")


def cpu_backend(dtype: torch.dtype) -> Backend:
    """The backend that runs CPU tensors of ``dtype``: float64 always on the reference backend (the float64
    reference contract); float32 on the current backend, or the best CPU one when that is cuda."""
    if dtype == torch.float64:
        return backends.get("reference")
    be = backends.current()
    if be.array_module == "numpy":
        return be
    for name in _CPU_ORDER:
        if backends.probe(name) is None:
            return backends.get(name)
    return backends.get("reference")  # pragma: no cover - reference always loads


def check_tensor(name: str, t: Any, *, ndim: int | None = None, floating: bool = True) -> None:
    """Raise TypeError / ValueError / NotImplementedError for what no cnnkern op takes."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {t.layout}")
    if t.device.type == "cuda":
        reason = backends.probe("cuda")
        if reason is not None:
            raise RuntimeError(
                f"{name} is a CUDA tensor, and cnnkern's cuda backend is unavailable: {reason}"
            )
    elif t.device.type not in ("cpu", "meta"):
        raise NotImplementedError(f"{name} is on device {t.device}: cnnkern.torch runs CPU and CUDA tensors")
    if floating and t.dtype not in FLOATS:
        raise TypeError(f"{name} must be float32 or float64 (cnnkern's kernels), got {t.dtype}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")


def same_dtype(x: torch.Tensor, **others: torch.Tensor | None) -> None:
    """Every floating argument shares the input's dtype (cnnkern casts nothing)."""
    for name, t in others.items():
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"{name} must have the dtype of the input ({x.dtype}), got {t.dtype}")


def backend_for(t: torch.Tensor) -> Backend:
    """The backend that runs an op on ``t``: a CUDA tensor on the cuda backend (float32 only; it needs CuPy),
    a CPU tensor on :func:`cpu_backend`."""
    if t.device.type != "cuda":
        return cpu_backend(t.dtype)
    if t.dtype != torch.float32:
        raise TypeError(
            f"a CUDA tensor of {t.dtype}: cnnkern's CUDA kernels take float32 (float64 runs on the CPU, "
            "on the float64 reference backend)"
        )
    return backends.get("cuda")


def _cupy() -> Any:
    import cupy

    return cupy


def arr_in(t: torch.Tensor | None) -> Any:
    """The array a kernel takes for a tensor, without a copy where it is C-contiguous: a NumPy view of a CPU
    tensor, a CuPy array over a CUDA tensor's memory (DLPack). Other strides (channels_last included) are
    copied to C-contiguous first: the kernels take C-contiguous NCHW."""
    if t is None:
        return None
    t = t.detach().contiguous()
    if t.device.type == "cuda":
        return _cupy().from_dlpack(t)
    if t.device.type != "cpu":
        check_tensor("a cnnkern op's input", t)
    return t.numpy()


def t_out(a: Any) -> torch.Tensor:
    """A tensor over a kernel's output array (new memory: no copy): NumPy for the CPU, CuPy (DLPack) on a
    GPU."""
    if isinstance(a, np.ndarray) or np.isscalar(a):
        return torch.from_numpy(np.asarray(a))
    return torch.from_dlpack(a)


def none_or(t: Any, like: torch.Tensor) -> torch.Tensor:
    """A gradient the backward was not asked for comes back as an empty tensor (custom ops return tensors),
    of ``like``'s dtype and device."""
    return like.new_empty(0) if t is None else t_out(t)


def copy_if_shared(a: Any, *others: Any) -> Any:
    """``a``, or a copy of it where it shares memory with one of ``others`` (an op's output may not alias
    an input)."""
    xp = np if isinstance(a, np.ndarray) else _cupy()
    return a.copy() if any(xp.shares_memory(a, o) for o in others) else a


@contextmanager
def device_scope(t: torch.Tensor | None) -> Iterator[None]:
    """Where ``t`` is a CUDA tensor: CuPy's current device and stream are ``t``'s device and PyTorch's
    current stream on it, so the kernels queue in order with PyTorch's work; nothing to do on the CPU."""
    if t is None or t.device.type != "cuda":
        yield
        return
    cupy = _cupy()
    with cupy.cuda.Device(t.device.index):
        with cupy.cuda.ExternalStream(torch.cuda.current_stream(t.device).cuda_stream):
            yield


def grad_or_none(t: torch.Tensor, needed: bool) -> torch.Tensor | None:
    """Undo :func:`none_or` for autograd: None where the input needs no gradient."""
    return t if needed else None
