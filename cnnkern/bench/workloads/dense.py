"""Dense-layer workloads: forward and backward."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import ops
from .. import shapes as S
from .base import Inputs, Outputs, Workload, _uniform

if TYPE_CHECKING:
    from ...backends.base import Backend


class DenseForward(Workload):
    spec: S.Dense
    kernel = "dense_forward"

    def _make(self, rng: np.random.Generator) -> Inputs:
        d = self.spec
        return {
            "x": _uniform(rng, (d.n, d.fin)),
            "w": _uniform(rng, (d.fout, d.fin)),
            "b": _uniform(rng, (d.fout,)),
        }

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        return (ops.dense_forward(a["x"], a["w"], a["b"], backend=be),)

    def _torch_call(self, t: Inputs) -> Outputs:
        from ... import torch_ref

        return torch_ref.dense_forward(t["x"], t["w"], t["b"])


class DenseBackward(Workload):
    spec: S.Dense
    kernel = "dense_backward"
    backward = True

    def _make(self, rng: np.random.Generator) -> Inputs:
        d = self.spec
        return {
            "dy": _uniform(rng, (d.n, d.fout)),
            "x": _uniform(rng, (d.n, d.fin)),
            "w": _uniform(rng, (d.fout, d.fin)),
        }

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        return ops.dense_backward(a["dy"], a["x"], a["w"], need_dx=self.spec.need_dx, backend=be)

    def _torch_call(self, t: Inputs) -> Outputs:
        from ... import torch_ref

        return torch_ref.dense_backward(t["dy"], t["x"], t["w"], need_dx=self.spec.need_dx)
