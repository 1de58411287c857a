"""torch.optim's SGD, Adam and AdamW running cnnkern's update kernels (``cnnkern.ops.sgd_update``,
``adam_update_multi``): the same constructor arguments, ``param_groups``, ``state`` and ``state_dict`` layout
as PyTorch's, so a checkpoint moves between them and ``torch.optim.lr_scheduler`` drives them.

Why beside torch.optim: the update of a converted model then runs on cnnkern's thread pool in one fused
pass, and no PyTorch parallel op runs in a converted training step. A PyTorch parallel op (torch.optim's
on any parameter of more than 32,768 elements) leaves PyTorch's OpenMP workers spinning for milliseconds
afterwards, on the cores cnnkern's kernels of the next step need (README, "From PyTorch"; docs/threads.md).

Updates happen in place on the parameters' memory (NumPy views of CPU tensors); a parameter, gradient or
state tensor that is not C-contiguous (channels_last weights) is updated through a contiguous copy written
back. float32 runs on the current CPU backend, float64 on the float64 reference backend, as the ops do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from .. import ops
from ._bridge import cpu_backend


def _check_param(p: torch.Tensor, name: str) -> None:
    if p.device.type != "cpu":
        raise NotImplementedError(
            f"{name}: cnnkern.torch.optim updates CPU tensors only, got device {p.device}"
        )
    if p.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name}: cnnkern.torch.optim updates float32 or float64 parameters, got {p.dtype}")
    if p.grad is not None and (p.grad.is_sparse or p.grad.layout != torch.strided):
        raise TypeError(f"{name}: sparse gradients are not supported (layout {p.grad.layout})")


class _Views:
    """NumPy arrays over tensors for one kernel call; tensors that are not C-contiguous go through
    contiguous copies, written back by :meth:`write_back` (for the ones the kernel updates)."""

    def __init__(self) -> None:
        self._back: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, t: torch.Tensor, updated: bool) -> np.ndarray:
        t = t.detach()
        if t.is_contiguous():
            return t.numpy()
        c = t.contiguous()
        if updated:
            self._back.append((t, c))
        return c.numpy()

    def write_back(self) -> None:
        for t, c in self._back:
            t.copy_(c)


def _float(value: Any, name: str) -> float:
    """A hyper-parameter that torch allows as a 0-d tensor (lr) as a float."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"{name} must be a number or a one-element tensor, got shape {tuple(value.shape)}"
            )
        return float(value.item())
    return float(value)


def _refuse(name: str, value: Any, default: Any) -> None:
    if value != default:
        raise ValueError(
            f"{name}={value!r} is not supported by cnnkern's update kernels (only {name}={default!r}); "
            "use torch.optim for it"
        )


class _KernelOptimizer(torch.optim.Optimizer):
    """torch.optim's ``step(closure)`` over :meth:`_update`, which receives each group's parameters that have
    a gradient (checked)."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for g, group in enumerate(self.param_groups):
            ps = []
            for i, p in enumerate(group["params"]):
                if p.grad is not None:
                    _check_param(p, f"param_groups[{g}]['params'][{i}]")
                    ps.append(p)
            self._update(group, ps)
        return loss

    def _update(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        raise NotImplementedError


class SGD(_KernelOptimizer):
    """``torch.optim.SGD`` (momentum, Nesterov, weight decay; ``dampening`` and ``maximize`` at their
    defaults) on ``cnnkern.ops.sgd_update``: ``state[p]["momentum_buffer"]`` as PyTorch keeps it."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        _refuse("dampening", dampening, 0.0)
        _refuse("maximize", maximize, False)
        if nesterov and momentum <= 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        defaults: dict[str, Any] = dict(lr=lr, momentum=momentum, dampening=0.0, weight_decay=weight_decay)
        defaults.update(nesterov=nesterov, maximize=False, foreach=None, differentiable=False, fused=None)
        super().__init__(params, defaults)

    def _update(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        momentum = float(group["momentum"])
        for p in params:
            velocity = None
            if momentum > 0.0:
                state = self.state[p]
                if state.get("momentum_buffer") is None:  # PyTorch's first step: the buffer is the gradient
                    state["momentum_buffer"] = torch.zeros(p.shape, dtype=p.dtype)
                velocity = state["momentum_buffer"]
            view = _Views()
            ops.sgd_update(
                view(p, True),
                view(p.grad, False),
                None if velocity is None else view(velocity, True),
                lr=_float(group["lr"], "lr"),
                momentum=momentum,
                nesterov=bool(group["nesterov"]),
                weight_decay=float(group["weight_decay"]),
                backend=cpu_backend(p.dtype),
            )
            view.write_back()


class Adam(_KernelOptimizer):
    """``torch.optim.Adam`` (``amsgrad`` and ``maximize`` at their defaults) on
    ``cnnkern.ops.adam_update_multi``: every parameter of a group with the same step count and dtype in one
    kernel call; ``state[p]`` holds ``step`` (a float32 0-d tensor), ``exp_avg`` and ``exp_avg_sq`` as
    PyTorch's does. ``weight_decay`` None: torch's default (0 here, 1e-2 for AdamW)."""

    _decoupled = False
    _default_weight_decay = 0.0

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float | None = None,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        if weight_decay is None:  # torch's defaults: 0 for Adam, 1e-2 for AdamW
            weight_decay = self._default_weight_decay
        _refuse("amsgrad", amsgrad, False)
        _refuse("maximize", maximize, False)
        defaults: dict[str, Any] = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        defaults["amsgrad"] = False
        defaults.update(maximize=False, foreach=None, capturable=False, differentiable=False, fused=None)
        if self._decoupled:
            defaults["decoupled_weight_decay"] = True
        super().__init__(params, defaults)

    def _update(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        calls: dict[tuple[int, torch.dtype], list[torch.Tensor]] = {}
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros(p.shape, dtype=p.dtype)
                state["exp_avg_sq"] = torch.zeros(p.shape, dtype=p.dtype)
            state["step"] += 1
            calls.setdefault((int(state["step"].item()), p.dtype), []).append(p)
        beta1, beta2 = (float(b) for b in group["betas"])
        for (step, dtype), same in calls.items():
            view = _Views()
            ops.adam_update_multi(
                [view(p, True) for p in same],
                [view(p.grad, False) for p in same],
                [view(self.state[p]["exp_avg"], True) for p in same],
                [view(self.state[p]["exp_avg_sq"], True) for p in same],
                step=step,
                lr=_float(group["lr"], "lr"),
                beta1=beta1,
                beta2=beta2,
                eps=float(group["eps"]),
                weight_decay=float(group["weight_decay"]),
                eps_mode="torch",
                decoupled_weight_decay=self._decoupled,
                backend=cpu_backend(dtype),
            )
            view.write_back()


class AdamW(Adam):
    """``torch.optim.AdamW`` (decoupled weight decay, default 1e-2) on the same kernel as :class:`Adam`; the
    same arguments."""

    _decoupled = True
    _default_weight_decay = 1e-2
