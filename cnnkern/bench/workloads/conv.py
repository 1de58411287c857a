"""Convolution workloads: forward and backward."""

from ... import ops
from .base import Workload, _uniform


class ConvForward(Workload):
    kernel = "conv2d_forward"

    def _make(self, rng):
        c = self.spec
        return {
            "x": _uniform(rng, (c.n, c.c, c.h, c.w)),
            "w": _uniform(rng, (c.k, c.c, c.r, c.s)),
            "b": _uniform(rng, (c.k,)),
        }

    def _call(self, be, a):
        return (ops.conv2d_forward(a["x"], a["w"], a["b"], padding=self.spec.pad, backend=be),)

    def _torch_call(self, t):
        from .. import torch_ref

        return torch_ref.conv2d_forward(t["x"], t["w"], t["b"], stride=(1, 1), padding=(self.spec.pad,) * 2)


class ConvBackward(Workload):
    kernel = "conv2d_backward"
    backward = True

    def _make(self, rng):
        c = self.spec
        return {
            "dy": _uniform(rng, (c.n, c.k, c.p, c.q)),
            "x": _uniform(rng, (c.n, c.c, c.h, c.w)),
            "w": _uniform(rng, (c.k, c.c, c.r, c.s)),
        }

    def _call(self, be, a):
        return ops.conv2d_backward(
            a["dy"], a["x"], a["w"], padding=self.spec.pad, need_dx=not self.spec.first, backend=be
        )

    def _torch_call(self, t):
        from .. import torch_ref

        return torch_ref.conv2d_backward(
            t["dy"], t["x"], t["w"], stride=(1, 1), padding=(self.spec.pad,) * 2, need_dx=not self.spec.first
        )
