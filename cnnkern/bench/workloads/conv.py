"""Convolution workloads: forward and backward."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import ops
from .. import shapes as S
from .base import Inputs, Outputs, Workload, _uniform

if TYPE_CHECKING:
    from ...backends.base import Backend


class ConvForward(Workload):
    spec: S.Conv
    kernel = "conv2d_forward"

    def _make(self, rng: np.random.Generator) -> Inputs:
        c = self.spec
        return {
            "x": _uniform(rng, (c.n, c.c, c.h, c.w)),
            "w": _uniform(rng, (c.k, c.c, c.r, c.s)),
            "b": _uniform(rng, (c.k,)),
        }

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        return (ops.conv2d_forward(a["x"], a["w"], a["b"], padding=self.spec.pad, backend=be),)

    def _torch_call(self, t: Inputs) -> Outputs:
        from ... import torch_ref

        return torch_ref.conv2d_forward(t["x"], t["w"], t["b"], stride=(1, 1), padding=(self.spec.pad,) * 2)


class ConvBackward(Workload):
    spec: S.Conv
    kernel = "conv2d_backward"
    backward = True

    def _make(self, rng: np.random.Generator) -> Inputs:
        c = self.spec
        return {
            "dy": _uniform(rng, (c.n, c.k, c.p, c.q)),
            "x": _uniform(rng, (c.n, c.c, c.h, c.w)),
            "w": _uniform(rng, (c.k, c.c, c.r, c.s)),
        }

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        return ops.conv2d_backward(
            a["dy"], a["x"], a["w"], padding=self.spec.pad, need_dx=not self.spec.first, backend=be
        )

    def _torch_call(self, t: Inputs) -> Outputs:
        from ... import torch_ref

        return torch_ref.conv2d_backward(
            t["dy"], t["x"], t["w"], stride=(1, 1), padding=(self.spec.pad,) * 2, need_dx=not self.spec.first
        )
