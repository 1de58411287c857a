"""Activation workloads: forward and backward."""

from ... import ops
from .base import Workload, _uniform


class ActivationForward(Workload):
    kernel = "activation_forward"
    rtol = 1e-5

    def _make(self, rng):
        return {"x": _uniform(rng, self.spec.shape, -3.0, 3.0)}

    def _call(self, be, a):
        return (ops.activation_forward(a["x"], self.spec.kind, backend=be),)

    def _torch_call(self, t):
        from .. import torch_ref

        return torch_ref.activation_forward(t["x"], self.spec.kind)


class ActivationBackward(Workload):
    kernel = "activation_backward"
    backward = True
    rtol = 1e-5

    def _make(self, rng):
        x = _uniform(rng, self.spec.shape, -3.0, 3.0)
        y = ops.activation_forward(x, self.spec.kind, backend="reference")
        return {"dy": _uniform(rng, x.shape), "y": y}

    def _call(self, be, a):
        return (ops.activation_backward(a["dy"], a["y"], self.spec.kind, backend=be),)

    def _torch_call(self, t):
        from .. import torch_ref

        return torch_ref.activation_backward(t["dy"], t["y"], self.spec.kind)
