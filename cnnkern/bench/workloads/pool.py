"""Pooling workloads: max pool forward and backward, and the fused max-pool + ReLU backward."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import ops
from .. import shapes as S
from .base import Inputs, Outputs, Workload, _uniform

if TYPE_CHECKING:
    from ...backends.base import Backend


class MaxPoolForward(Workload):
    spec: S.Pool
    kernel = "maxpool2d_forward"

    def _make(self, rng: np.random.Generator) -> Inputs:
        p = self.spec
        return {"x": _uniform(rng, (p.n, p.c, p.h, p.w))}

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        return ops.maxpool2d_forward(a["x"], kernel_size=self.spec.k, backend=be)

    def _torch_call(self, t: Inputs) -> Outputs:
        from ... import torch_ref

        return torch_ref.maxpool2d_forward(t["x"], kernel_size=(self.spec.k,) * 2)


class MaxPoolBackward(Workload):
    spec: S.Pool
    kernel = "maxpool2d_backward"
    backward = True

    def _make(self, rng: np.random.Generator) -> Inputs:
        p = self.spec
        x = _uniform(rng, (p.n, p.c, p.h, p.w))
        _, argmax = ops.maxpool2d_forward(x, kernel_size=p.k, backend="reference")
        return {"x": x, "argmax": argmax, "dy": _uniform(rng, (p.n, p.c, p.p, p.q))}

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        return (ops.maxpool2d_backward(a["dy"], a["argmax"], a["x"].shape, backend=be),)

    def _torch_call(self, t: Inputs) -> Outputs:
        from ... import torch_ref

        return torch_ref.maxpool2d_backward(t["dy"], t["x"], t["argmax"], kernel_size=(self.spec.k,) * 2)


class MaxPoolReluBackward(Workload):
    """The pool's backward with the preceding ReLU's gradient folded in (what the model layer runs for
    Conv2D(relu) > MaxPooling2D); PyTorch's peer is the two ATen ops autograd runs for it."""

    spec: S.Pool
    kernel = "maxpool2d_act_backward"
    backward = True

    @property
    def label(self) -> str:
        return self.spec.label + " +relu"

    @property
    def bytes(self) -> int:  # the pool backward's traffic plus reading the ReLU's output once
        p = self.spec
        return p.backward_bytes() + p.n * p.c * p.h * p.w * S.F32

    def _make(self, rng: np.random.Generator) -> Inputs:
        p = self.spec
        a = np.maximum(_uniform(rng, (p.n, p.c, p.h, p.w), -1.0, 1.0), 0)  # a ReLU output: zeros, ties
        _, argmax = ops.maxpool2d_forward(a, kernel_size=p.k, backend="reference")
        return {"a": a, "argmax": argmax, "dy": _uniform(rng, (p.n, p.c, p.p, p.q))}

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        return (ops.maxpool2d_act_backward(a["dy"], a["argmax"], a["a"], "relu", backend=be),)

    def _torch_call(self, t: Inputs) -> Outputs:
        from ... import torch_ref

        (dx,) = torch_ref.maxpool2d_backward(t["dy"], t["a"], t["argmax"], kernel_size=(self.spec.k,) * 2)
        return torch_ref.activation_backward(dx, t["a"], "relu")
