"""Optimizer workloads: one Adam step and one SGD step over a parameter set."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ... import ops
from .. import shapes as S
from .base import Inputs, Outputs, Workload, _uniform

if TYPE_CHECKING:
    from ...backends.base import Backend


class AdamStep(Workload):
    """One Adam step (PyTorch's form, lr 1e-3) over every parameter of ``spec`` (a :class:`.shapes.Params`):
    one ``adam_update`` call per parameter, the step count advancing per call of the workload."""

    spec: S.Params
    kernel = "adam_update"

    def _make(self, rng: np.random.Generator) -> Inputs:
        shapes = self.spec.shapes
        return {
            "params": [_uniform(rng, s) for s in shapes],
            "grads": [_uniform(rng, s, -0.1, 0.1) for s in shapes],
            "m": [np.zeros(s, np.float32) for s in shapes],
            "v": [np.zeros(s, np.float32) for s in shapes],
        }

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        a["step"] = a.get("step", 0) + 1
        for p, g, m, v in zip(a["params"], a["grads"], a["m"], a["v"]):
            ops.adam_update(p, g, m, v, step=a["step"], lr=1e-3, backend=be)
        return (a["params"],)

    def bind_torch(self, memory_format: str = "nchw") -> Callable[[], Outputs]:
        from ... import torch_ref

        step = torch_ref.OptimizerStep(self.inputs()["params"], self.inputs()["grads"], "adam", lr=1e-3)
        return lambda: (list(step()),)


class SgdStep(Workload):
    """One SGD step with momentum 0.9 (PyTorch's form, lr 0.01) over every parameter of ``spec``."""

    spec: S.Params
    kernel = "sgd_update"

    @property
    def flops(self) -> int:
        return 4 * self.spec.count  # v = m·v + g; p −= lr·v

    @property
    def bytes(self) -> int:
        return 5 * S.F32 * self.spec.count  # read param, grad, velocity; write param, velocity

    def _make(self, rng: np.random.Generator) -> Inputs:
        shapes = self.spec.shapes
        return {
            "params": [_uniform(rng, s) for s in shapes],
            "grads": [_uniform(rng, s, -0.1, 0.1) for s in shapes],
            "velocity": [np.zeros(s, np.float32) for s in shapes],
        }

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        for p, g, v in zip(a["params"], a["grads"], a["velocity"]):
            ops.sgd_update(p, g, v, lr=0.01, momentum=0.9, backend=be)
        return (a["params"],)

    def bind_torch(self, memory_format: str = "nchw") -> Callable[[], Outputs]:
        from ... import torch_ref

        step = torch_ref.OptimizerStep(
            self.inputs()["params"], self.inputs()["grads"], "sgd", lr=0.01, momentum=0.9
        )
        return lambda: (list(step()),)
