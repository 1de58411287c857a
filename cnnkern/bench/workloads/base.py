"""What every workload shares: the :class:`Workload` base (bind to a backend or to PyTorch, check against
the reference), array conversion and the seeded input helpers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ... import backends
from ..._typing import Shape

if TYPE_CHECKING:
    from ...backends.base import Backend

Inputs = dict[str, Any]
"""A workload's inputs by name: NumPy arrays (lists of them for the optimizers); in a binding, the backend's
or torch's arrays."""
Outputs = Sequence[Any]
"""A kernel's outputs, aligned with the reference's (None where a peer has no such output)."""


def to_numpy(a: Any) -> np.ndarray | None:
    """A backend or torch array as NumPy (None stays None)."""
    if a is None:
        return None
    if hasattr(a, "detach"):  # torch
        return a.detach().cpu().numpy()
    if hasattr(a, "get") and not isinstance(a, np.ndarray):  # cupy
        return a.get()
    return np.asarray(a)


def _copy_to(a: Any, backend: Backend) -> Any:
    """A copy of NumPy ``a`` (or of each array in a list) as the backend's array kind."""
    if isinstance(a, list):
        return [_copy_to(v, backend) for v in a]
    if not isinstance(a, np.ndarray):
        return a
    if backend.array_module == "cupy":
        import cupy

        return cupy.asarray(a)
    return a.copy()


def _as64(a: Any) -> Any:
    if isinstance(a, list):
        return [_as64(v) for v in a]
    if isinstance(a, np.ndarray) and a.dtype == np.float32:
        return a.astype(np.float64)
    return a


def _uniform(rng: np.random.Generator, shape: Shape, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def _eighths(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    """Multiples of 1/8 in [-1, 1]: a conv of them is exact in float32 (its products are multiples of 1/64
    and its sums stay far below 2^24/64), so the argmax of a pool after it is the same on every backend."""
    return (rng.integers(-8, 9, size=shape) / 8).astype(np.float32)


class Workload:
    """One kernel (``kernel``, a :mod:`cnnkern.ops` name) on one shape ``spec``."""

    kernel = ""
    backward = False  # which of the spec's counts apply
    rtol = 1e-3
    torch_only: tuple[str, ...] = ()  # input names only the PyTorch peer uses
    torch_formats: tuple[str, ...] = ("nchw",)
    spec: Any  # a :mod:`..shapes` layer spec; each subclass names its type

    def __init__(self, spec: Any, seed: int = 0) -> None:
        self.spec = spec
        self.seed = seed
        self._inputs: Inputs | None = None
        self._expected: tuple[Any, ...] | None = None

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def flops(self) -> int | None:
        return self.spec.backward_flops() if self.backward else self.spec.forward_flops()

    @property
    def bytes(self) -> int | None:
        return self.spec.backward_bytes() if self.backward else self.spec.forward_bytes()

    def inputs(self) -> Inputs:
        if self._inputs is None:
            self._inputs = self._make(np.random.default_rng(self.seed))
        return self._inputs

    def bind(self, backend: Backend) -> Callable[[], Outputs]:
        """A no-argument callable running the kernel once on ``backend`` (a Backend) and returning its
        outputs; CuPy work is synchronised before it returns."""
        a = {k: _copy_to(v, backend) for k, v in self.inputs().items() if k not in self.torch_only}
        if backend.array_module == "cupy":

            def run() -> Outputs:
                out = self._call(backend, a)
                backend.synchronize()
                return out

            return run
        return lambda: self._call(backend, a)

    def bind_torch(self, memory_format: str = "nchw") -> Callable[[], Outputs]:
        """The same for the PyTorch peer (inputs as contiguous CPU tensors; kernels run NCHW only)."""
        import torch

        t = {
            k: [torch.from_numpy(x.copy()) for x in v] if isinstance(v, list) else torch.from_numpy(v.copy())
            for k, v in self.inputs().items()
        }
        return lambda: self._torch_call(t)

    def expected(self) -> tuple[Any, ...]:
        """The reference backend's outputs on float64 copies of the inputs."""
        if self._expected is None:
            ref = backends.get("reference")
            a = {k: _as64(v) for k, v in self.inputs().items() if k not in self.torch_only}
            a = {k: [x.copy() for x in v] if isinstance(v, list) else v.copy() for k, v in a.items()}
            self._expected = tuple(_host(o) for o in self._call(ref, a))
        return self._expected

    def verify(self, fn: Callable[[], Outputs]) -> str | None:
        """Run a fresh binding's ``fn`` once and :meth:`check` what it returns."""
        return self.check(fn())

    def check(self, outputs: Outputs) -> str | None:
        """None if ``outputs`` (a tuple aligned with the kernel's outputs, None where a peer has no such
        output) agree with :meth:`expected`, else what differs."""
        expected = self.expected()
        if len(outputs) != len(expected):
            return f"{len(outputs)} outputs, expected {len(expected)}"
        pairs: list[tuple[str, Any, Any]] = []
        for i, (out, ref) in enumerate(zip(outputs, expected)):
            if out is None or ref is None:
                continue
            if isinstance(out, (list, tuple)):  # the optimizers: one array per parameter
                pairs += [(f"output {i}[{j}]", o, r) for j, (o, r) in enumerate(zip(out, ref))]
            else:
                pairs.append((f"output {i}", out, ref))
        if not pairs:
            return "no output to compare"
        return next((m for m in (_compare(what, o, r, self.rtol) for what, o, r in pairs) if m), None)

    def _make(self, rng: np.random.Generator) -> Inputs:
        raise NotImplementedError

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        raise NotImplementedError

    def _torch_call(self, t: Inputs) -> Outputs:
        raise NotImplementedError


def _host(o: Any) -> Any:
    """An output (or list of outputs) as NumPy; None stays None."""
    if isinstance(o, (list, tuple)):
        return [_host(v) for v in o]
    return to_numpy(o)


def _compare(what: str, out: Any, ref: Any, rtol: float) -> str | None:
    """None if ``out`` matches ``ref``: integers exactly, floats within ``rtol`` x (max |ref| + |ref|)."""
    out = to_numpy(out)
    ref = np.asarray(ref)
    if out.shape != ref.shape:
        return f"{what}: shape {out.shape}, expected {ref.shape}"
    if ref.dtype.kind in "iu":
        bad = np.count_nonzero(out != ref)
        return f"{what}: {bad} of {ref.size} indices differ" if bad else None
    out = out.astype(np.float64)
    nans = np.count_nonzero(np.isnan(out))
    if nans:
        return f"{what}: {nans} NaN values"
    scale = float(np.max(np.abs(ref)))
    err = np.abs(out - ref)
    excess = err - rtol * (scale + np.abs(ref))
    if np.any(excess > 0):
        worst = int(np.argmax(excess))
        return (
            f"{what}: max |error| {float(err.max()):.3g} (tolerance {rtol:g} x {scale:.3g}); worst value "
            f"{out.flat[worst]!r} vs {ref.flat[worst]!r}"
        )
    return None
