"""Training-mode batch norm forward and backward over the classic CNN's first two conv outputs (32x26x26,
64x11x11) at batch 32 and 128 and over the ResNet-like activations (64x56x56, 128x28x28, batch 8).
Memory-bound: compare the GB/s in extra_info."""

import pytest

from cnnkern.bench import shapes, workloads

SHAPES = list({s: None for b in (32, 128) for s in shapes.batchnorm_shapes(b).values()})


@pytest.mark.parametrize("spec", SHAPES, ids=lambda s: f"{s.name}-b{s.n}")
def test_batchnorm2d_forward(measure, spec):
    measure(workloads.BatchNormForward(spec))


@pytest.mark.parametrize("spec", SHAPES, ids=lambda s: f"{s.name}-b{s.n}")
def test_batchnorm2d_backward(measure, spec):
    measure(workloads.BatchNormBackward(spec))
