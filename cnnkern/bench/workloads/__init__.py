"""Kernel workloads: one kernel on one named layer shape (:mod:`.shapes`), runnable on any cnnkern backend
(through the front door, :mod:`cnnkern.ops`, as a user calls it) and on PyTorch, with the reference
backend's float64 answer for the check before timing.

A workload's inputs are drawn once from a seeded generator; each binding (:meth:`Workload.bind`,
:meth:`Workload.bind_torch`) gets its own copies, so in-place kernels (Adam, batch norm's running
statistics) never disturb another candidate. The first call of a fresh binding is the one checked.

The check is a guard against timing a broken kernel, not the conformance suite: values must agree with the
reference within ``rtol`` of the largest reference magnitude, argmax exactly.

One module per family (the stem rule: ``workloads/<stem>.py``), the shared base in ``base.py``.
"""

from __future__ import annotations

from .. import shapes as S
from .activation import ActivationBackward, ActivationForward
from .base import Workload, to_numpy
from .batchnorm import BatchNormBackward, BatchNormForward
from .conv import ConvBackward, ConvForward
from .conv_pool import ConvPoolBackward, ConvPoolForward
from .dense import DenseBackward, DenseForward
from .loss import LossBackward, LossForward
from .optim import AdamStep, SgdStep
from .pool import MaxPoolBackward, MaxPoolForward, MaxPoolReluBackward

__all__ = [
    "ActivationBackward", "ActivationForward", "AdamStep", "BatchNormBackward", "BatchNormForward",
    "ConvBackward", "ConvForward", "ConvPoolBackward", "ConvPoolForward", "DenseBackward", "DenseForward",
    "FAMILIES", "LossBackward", "LossForward", "MaxPoolBackward", "MaxPoolForward", "MaxPoolReluBackward",
    "SgdStep", "Workload", "classic_workloads", "resnet_workloads", "to_numpy", "workloads_for",
]  # fmt: skip

FAMILIES: dict[str, tuple[type[Workload], ...]] = {
    "conv": (ConvForward, ConvBackward),
    "pool": (MaxPoolForward, MaxPoolBackward, MaxPoolReluBackward),
    "batchnorm": (BatchNormForward, BatchNormBackward),
    "dense": (DenseForward, DenseBackward),
    "activation": (ActivationForward, ActivationBackward),
    "loss": (LossForward, LossBackward),
    "optim": (AdamStep,),
}
_SPEC_FAMILY: dict[type, str] = {
    S.Conv: "conv",
    S.Pool: "pool",
    S.BatchNorm: "batchnorm",
    S.Dense: "dense",
    S.Elementwise: "activation",
    S.Loss: "loss",
    S.Params: "optim",
}


def workloads_for(spec: S.Layer | S.BatchNorm, seed: int = 0) -> list[Workload]:
    """The forward and backward workloads of one layer spec (Adam: the one update)."""
    return [cls(spec, seed) for cls in FAMILIES[_SPEC_FAMILY[type(spec)]]]


def classic_workloads(batch: int, seed: int = 0) -> list[Workload]:
    """Every kernel of the classic CNN's training step at ``batch``, in network order, each conv + ReLU +
    pool pair also as the fused kernel pair the model layer runs for it (after the pool's kernels)."""
    pairs = {pair.pool.name: pair for pair in S.conv_pool_pairs(batch).values()}
    out: list[Workload] = []
    for spec in S.classic_layers(batch).values():
        out += workloads_for(spec, seed)
        if spec.name in pairs:
            out += [ConvPoolForward(pairs[spec.name], seed), ConvPoolBackward(pairs[spec.name], seed)]
    return out


def resnet_workloads(seed: int = 0) -> list[Workload]:
    return [w for spec in S.resnet_convs().values() for w in workloads_for(spec, seed)]
