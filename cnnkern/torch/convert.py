"""``convert(model)``: swap a PyTorch model's layers for cnnkern's, in place, and say what was swapped.

Leaf modules of exactly a supported torch.nn type (not subclasses, whose forward may differ) become their
:mod:`cnnkern.torch.modules` twin, sharing the same Parameter and buffer objects (an optimizer made before
the conversion keeps working). Inside each ``nn.Sequential``, neighbours are fused where cnnkern has the
kernel:

* Conv2d -> activation -> MaxPool2d, and Conv2d -> MaxPool2d: one :class:`ConvActPool2d`;
* Conv2d -> activation and Linear -> activation: the activation folded into the Conv2d / Linear kernel;

the activation being ReLU, LeakyReLU (slope >= 0), Sigmoid or Tanh. A fused group's later members become
``nn.Identity`` so the Sequential's indices and state_dict keys stay as they were. Everything else (and a
layer with settings cnnkern lacks: padding_mode other than 'zeros', divisor_override, dtypes other than
float32/float64, float64 on CUDA) stays a torch.nn module, listed in the report with the reason. A model on
CUDA converts when the cuda backend loads (CuPy), else not at all (the report says why).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import backends
from . import modules as M

_ACTS: dict[type, str] = {nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}
_TWINS: dict[type, type] = {
    nn.Conv2d: M.Conv2d,
    nn.Linear: M.Linear,
    nn.MaxPool2d: M.MaxPool2d,
    nn.AvgPool2d: M.AvgPool2d,
    nn.BatchNorm2d: M.BatchNorm2d,
    nn.ReLU: M.ReLU,
    nn.LeakyReLU: M.LeakyReLU,
    nn.Sigmoid: M.Sigmoid,
    nn.Tanh: M.Tanh,
    nn.CrossEntropyLoss: M.CrossEntropyLoss,
}


@dataclass
class ConversionReport:
    """What :func:`convert` did: ``replaced`` (path, torch type, cnnkern type), ``fused`` (the paths of a
    group, what it became) and ``kept`` (path, type, why it stays torch's)."""

    replaced: list[tuple[str, str, str]] = field(default_factory=list)
    fused: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    kept: list[tuple[str, str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"replaced {len(self.replaced)}, fused {len(self.fused)} groups, kept {len(self.kept)}"]
        lines += [f"  fused    {' + '.join(paths)} -> {what}" for paths, what in self.fused]
        lines += [f"  replaced {path}: {old} -> {new}" for path, old, new in self.replaced]
        lines += [f"  kept     {path}: {kind} ({why})" for path, kind, why in self.kept]
        return "\n".join(lines)


def _unsupported(m: nn.Module) -> str | None:
    """Why leaf ``m`` cannot run on cnnkern (None: it can)."""
    if type(m) not in _TWINS:
        return "no cnnkern kernel: runs in torch"
    for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
        if t.device.type not in ("cpu", "cuda"):
            return f"on {t.device}: cnnkern.torch runs CPU and CUDA tensors"
        if t.device.type == "cuda" and t.is_floating_point() and t.dtype != torch.float32:
            return f"dtype {t.dtype} on {t.device}: cnnkern's CUDA kernels are float32"
        if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
            return f"dtype {t.dtype}: cnnkern runs float32 and float64"
    if isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
        return f"padding_mode={m.padding_mode!r}: cnnkern pads with zeros only"
    if isinstance(m, nn.AvgPool2d) and m.divisor_override is not None:
        return "divisor_override is not supported"
    if isinstance(m, nn.LeakyReLU) and not m.negative_slope >= 0:
        return "negative_slope < 0 is not supported"
    if isinstance(m, nn.CrossEntropyLoss) and (
        m.weight is not None or m.reduction != "mean" or m.label_smoothing != 0.0
    ):
        return "only weight=None, reduction='mean', label_smoothing=0 are supported"
    return None


def _twin(m: nn.Module, activation: str | None = None, alpha: float = 0.01) -> nn.Module:
    """The cnnkern twin of ``m`` over the same parameters and buffers (a shallow copy with the class set)."""
    new = copy.copy(m)
    new.__class__ = _TWINS[type(m)]
    for registry in ("_parameters", "_buffers", "_modules"):  # its own dicts over the same tensors
        setattr(new, registry, dict(getattr(m, registry)))
    if isinstance(new, (M.Conv2d, M.Linear)):
        new.activation, new.alpha = activation, alpha
    return new


def _act_of(m: nn.Module) -> tuple[str, float] | None:
    if type(m) in _ACTS and _unsupported(m) is None:
        return _ACTS[type(m)], float(getattr(m, "negative_slope", 0.01))
    return None


def _fuse_sequential(seq: nn.Sequential, prefix: str, report: ConversionReport) -> set[str]:
    """Fuse neighbours inside ``seq``; returns the names of the children it replaced."""
    names = list(seq._modules)
    done: set[str] = set()
    i = 0
    while i < len(names):
        m = seq._modules[names[i]]
        nxt = [seq._modules[n] for n in names[i + 1 : i + 3]]
        act = _act_of(nxt[0]) if nxt else None
        if type(m) in (nn.Conv2d, nn.Linear) and _unsupported(m) is None and m is not None:
            pool_at = 1 + (act is not None)
            pool = nxt[pool_at - 1] if len(nxt) >= pool_at else None
            group = names[i : i + 1 + pool_at] if type(m) is nn.Conv2d and _pool_ok(pool) else None
            if group is not None and isinstance(m, nn.Conv2d) and isinstance(pool, nn.MaxPool2d):
                kind, alpha = act if act is not None else (None, 0.01)
                seq._modules[names[i]] = M.ConvActPool2d(m, pool, kind, alpha)
                what = "ConvActPool2d"
            elif act is not None:
                group = names[i : i + 2]
                seq._modules[names[i]] = _twin(m, *act)
                what = f"{type(seq._modules[names[i]]).__name__}(activation={act[0]!r})"
            else:
                i += 1
                continue
            for n in group[1:]:
                seq._modules[n] = nn.Identity()
            report.fused.append((tuple(prefix + n for n in group), what))
            done.update(group)
            i += len(group)
            continue
        i += 1
    return done


def _pool_ok(pool: nn.Module | None) -> bool:
    return type(pool) is nn.MaxPool2d and _unsupported(pool) is None and not pool.return_indices  # type: ignore[union-attr]


def _convert(module: nn.Module, prefix: str, report: ConversionReport) -> None:
    done = _fuse_sequential(module, prefix, report) if type(module) is nn.Sequential else set()
    for name, child in list(module._modules.items()):
        if child is None or name in done:
            continue
        path = prefix + name
        if len(child._modules) > 0:
            _convert(child, path + ".", report)
            continue
        why = _unsupported(child)
        if why is None:
            module._modules[name] = _twin(child)
            report.replaced.append((path, type(child).__name__, "cnnkern.torch." + type(child).__name__))
        elif not isinstance(child, tuple(_TWINS.values())) and not isinstance(child, M.ConvActPool2d):
            report.kept.append((path, type(child).__name__, why))


def convert(model: Any) -> tuple[Any, ConversionReport]:
    """Replace ``model``'s supported layers by cnnkern's, in place (see the module docstring for what is
    fused); returns ``(model, report)``. A model that is itself a supported layer comes back replaced."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    report = ConversionReport()
    if any(t.device.type == "cuda" for t in (*model.parameters(), *model.buffers())):
        reason = backends.probe("cuda")
        if reason is not None:  # nothing converted: a parameterless layer would meet CUDA tensors too
            report.kept.append(
                ("", type(model).__name__, f"on CUDA, and cnnkern's cuda backend is unavailable: {reason}")
            )
            return model, report
    if len(model._modules) == 0:
        why = _unsupported(model)
        if why is None:
            report.replaced.append(("", type(model).__name__, "cnnkern.torch." + type(model).__name__))
            return _twin(model), report
        report.kept.append(("", type(model).__name__, why))
        return model, report
    _convert(model, "", report)
    return model, report
