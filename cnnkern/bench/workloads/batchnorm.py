"""Batch-norm workloads: forward (training) and backward."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import ops
from .. import shapes as S
from .base import Inputs, Outputs, Workload, _uniform

if TYPE_CHECKING:
    from ...backends.base import Backend


class BatchNormForward(Workload):
    spec: S.BatchNorm
    kernel = "batchnorm2d_forward"

    def _make(self, rng: np.random.Generator) -> Inputs:
        b = self.spec
        return {
            "x": _uniform(rng, (b.n, b.c, b.h, b.w)),
            "gamma": _uniform(rng, (b.c,), 0.5, 1.5),
            "beta": _uniform(rng, (b.c,)),
            "running_mean": np.zeros(b.c, np.float32),
            "running_var": np.ones(b.c, np.float32),
        }

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        return ops.batchnorm2d_forward(
            a["x"], a["gamma"], a["beta"], a["running_mean"], a["running_var"], training=True, backend=be
        )

    def _torch_call(self, t: Inputs) -> Outputs:
        from ... import torch_ref

        return torch_ref.batchnorm2d_forward(
            t["x"], t["gamma"], t["beta"], t["running_mean"], t["running_var"]
        )


class BatchNormBackward(Workload):
    spec: S.BatchNorm
    kernel = "batchnorm2d_backward"
    backward = True

    def _make(self, rng: np.random.Generator) -> Inputs:
        b = self.spec
        x = _uniform(rng, (b.n, b.c, b.h, b.w))
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=(0, 2, 3))
        invstd = 1.0 / np.sqrt(((x64 - mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3)) + 1e-5)
        return {
            "dy": _uniform(rng, x.shape),
            "x": x,
            "gamma": _uniform(rng, (b.c,), 0.5, 1.5),
            "mean": mean.astype(np.float32),
            "invstd": invstd.astype(np.float32),
        }

    def _call(self, be: Backend, a: Inputs) -> Outputs:
        return ops.batchnorm2d_backward(
            a["dy"], a["x"], a["gamma"], a["mean"], a["invstd"], training=True, backend=be
        )

    def _torch_call(self, t: Inputs) -> Outputs:
        from ... import torch_ref

        return torch_ref.batchnorm2d_backward(t["dy"], t["x"], t["gamma"], t["mean"], t["invstd"])
