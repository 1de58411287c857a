"""Tensors in and out of cnnkern's kernels: which backend runs a CPU tensor, zero-copy NumPy views, and the
checks that turn a tensor a kernel cannot take (dtype, device, layout) into an error naming the argument."""

from __future__ import annotations

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
        raise NotImplementedError(
            f"{name} is a CUDA tensor: cnnkern.torch runs CPU tensors only for now (the CUDA/DLPack path is "
            "not written yet); move the model and data to the CPU, or leave this layer to torch.nn"
        )
    if t.device.type not in ("cpu", "meta"):
        raise NotImplementedError(f"{name} is on device {t.device}: cnnkern.torch runs CPU tensors only")
    if floating and t.dtype not in FLOATS:
        raise TypeError(f"{name} must be float32 or float64 (cnnkern's kernels), got {t.dtype}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")


def same_dtype(x: torch.Tensor, **others: torch.Tensor | None) -> None:
    """Every floating argument shares the input's dtype (cnnkern casts nothing)."""
    for name, t in others.items():
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"{name} must have the dtype of the input ({x.dtype}), got {t.dtype}")


def np_in(t: torch.Tensor | None) -> np.ndarray | None:
    """A NumPy view of a CPU tensor (a contiguous copy only when t is strided otherwise, channels_last
    included: the kernels take C-contiguous NCHW)."""
    if t is None:
        return None
    if t.device.type != "cpu":
        check_tensor("a cnnkern op's input", t)
    return t.detach().contiguous().numpy()


def t_out(a: Any) -> torch.Tensor:
    """A tensor over a kernel's output array (new memory: no copy)."""
    return torch.from_numpy(np.asarray(a))


def none_or(t: Any, dtype: torch.dtype) -> torch.Tensor:
    """A gradient the backward was not asked for comes back as an empty tensor (custom ops return tensors)."""
    return torch.empty(0, dtype=dtype) if t is None else t_out(t)


def grad_or_none(t: torch.Tensor, needed: bool) -> torch.Tensor | None:
    """Undo :func:`none_or` for autograd: None where the input needs no gradient."""
    return t if needed else None
