"""Softmax cross-entropy workloads: forward and backward."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import ops
from .. import shapes as S
from .base import Inputs, Outputs, Workload, _uniform

if TYPE_CHECKING:
    from ...backends.base import Backend


class LossForward(Workload):
    spec: S.Loss
    kernel = "softmax_cross_entropy_forward"

    def _make(self, rng: np.random.Generator) -> Inputs:
        s = self.spec
        return {
            "logits": _uniform(rng, (s.n, s.classes), -5.0, 5.0),
            "labels": rng.integers(0, s.classes, size=s.n).astype(np.int64),
        }

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        return ops.softmax_cross_entropy_forward(a["logits"], a["labels"], backend=be)

    def _torch_call(self, t: Inputs) -> Outputs:
        from ... import torch_ref

        return torch_ref.softmax_cross_entropy_forward(t["logits"], t["labels"])


class LossBackward(Workload):
    spec: S.Loss
    kernel = "softmax_cross_entropy_backward"
    backward = True
    torch_only: tuple[str, ...] = ("logp",)

    def _make(self, rng: np.random.Generator) -> Inputs:
        s = self.spec
        logits = rng.uniform(-5.0, 5.0, size=(s.n, s.classes))
        logp = logits - logits.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        return {
            "probs": np.exp(logp).astype(np.float32),
            "logp": logp.astype(np.float32),
            "labels": rng.integers(0, s.classes, size=s.n).astype(np.int64),
        }

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        return (ops.softmax_cross_entropy_backward(a["probs"], a["labels"], backend=be),)

    def _torch_call(self, t: Inputs) -> Outputs:
        from ... import torch_ref

        return torch_ref.softmax_cross_entropy_backward(t["logp"], t["labels"])
