"""The fused conv + activation + max-pool pair as the model layer runs it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import ops
from .. import shapes as S
from .base import Inputs, Outputs, Workload, _eighths, _uniform

if TYPE_CHECKING:
    from ...backends.base import Backend


class ConvPoolForward(Workload):
    """ops.conv2d_act_maxpool_forward with ReLU and the 2x2 pool; PyTorch's peer runs conv2d, relu and
    max_pool2d_with_indices. Inputs in eighths (:func:`_eighths`): the argmax check is exact."""

    spec: S.ConvPool
    kernel = "conv2d_act_maxpool_forward"

    def _make(self, rng: np.random.Generator) -> Inputs:
        c = self.spec.conv
        return {
            "x": _eighths(rng, (c.n, c.c, c.h, c.w)),
            "w": _eighths(rng, (c.k, c.c, c.r, c.s)),
            "b": _eighths(rng, (c.k,)),
        }

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        s = self.spec
        return ops.conv2d_act_maxpool_forward(
            a["x"], a["w"], a["b"], padding=s.conv.pad, activation="relu", pool_size=s.pool.k, backend=be
        )

    def _torch_call(self, t: Inputs) -> Outputs:
        from ... import torch_ref

        s = self.spec
        return torch_ref.conv2d_relu_maxpool_forward(
            t["x"], t["w"], t["b"], padding=(s.conv.pad,) * 2, kernel_size=(s.pool.k,) * 2
        )


class ConvPoolBackward(Workload):
    """ops.conv2d_act_maxpool_backward from the forward's pooled output and argmax (dw and db only for the
    first layer); PyTorch's peer runs the pool's scatter, ReLU's and the conv's backward, which need the
    full-resolution ReLU output (``a``, kept by PyTorch's autograd)."""

    spec: S.ConvPool
    kernel = "conv2d_act_maxpool_backward"
    backward = True
    torch_only: tuple[str, ...] = ("a",)

    def _make(self, rng: np.random.Generator) -> Inputs:
        c, p = self.spec.conv, self.spec.pool
        x, w, b = (
            _eighths(rng, (c.n, c.c, c.h, c.w)),
            _eighths(rng, (c.k, c.c, c.r, c.s)),
            _eighths(rng, (c.k,)),
        )
        a = ops.conv2d_bias_act_forward(x, w, b, padding=c.pad, activation="relu", backend="reference")
        y, argmax = ops.maxpool2d_forward(a, kernel_size=p.k, backend="reference")
        return {"dy": _uniform(rng, y.shape), "y": y, "argmax": argmax, "x": x, "w": w, "a": a}

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        c = self.spec.conv
        return ops.conv2d_act_maxpool_backward(
            a["dy"],
            a["y"],
            a["argmax"],
            a["x"],
            a["w"],
            padding=c.pad,
            activation="relu",
            need_dx=not c.first,
            backend=be,
        )

    def _torch_call(self, t: Inputs) -> Outputs:
        from ... import torch_ref

        s = self.spec
        return torch_ref.conv2d_relu_maxpool_backward(
            t["dy"],
            t["a"],
            t["argmax"],
            t["x"],
            t["w"],
            padding=(s.conv.pad,) * 2,
            kernel_size=(s.pool.k,) * 2,
            need_dx=not s.conv.first,
        )
