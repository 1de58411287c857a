"""Activation workloads: forward and backward."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import ops
from .. import shapes as S
from .base import Inputs, Outputs, Workload, _uniform

if TYPE_CHECKING:
    from ...backends.base import Backend


class ActivationForward(Workload):
    spec: S.Elementwise
    kernel = "activation_forward"
    rtol = 1e-5

    def _make(self, rng: np.random.Generator) -> Inputs:
        return {"x": _uniform(rng, self.spec.shape, -3.0, 3.0)}

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        return (ops.activation_forward(a["x"], self.spec.kind, backend=be),)

    def _torch_call(self, t: Inputs) -> Outputs:
        from ... import torch_ref

        return torch_ref.activation_forward(t["x"], self.spec.kind)


class ActivationBackward(Workload):
    spec: S.Elementwise
    kernel = "activation_backward"
    backward = True
    rtol = 1e-5

    def _make(self, rng: np.random.Generator) -> Inputs:
        x = _uniform(rng, self.spec.shape, -3.0, 3.0)
        y = ops.activation_forward(x, self.spec.kind, backend="reference")
        return {"dy": _uniform(rng, x.shape), "y": y}

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        return (ops.activation_backward(a["dy"], a["y"], self.spec.kind, backend=be),)

    def _torch_call(self, t: Inputs) -> Outputs:
        from ... import torch_ref

        return torch_ref.activation_backward(t["dy"], t["y"], self.spec.kind)
