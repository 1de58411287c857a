"""Dense forward and backward on the classic CNN's two dense layers (576->64, 64->10) at batch 32 and 128."""

import pytest

from cnnkern.bench import shapes, workloads

SHAPES = [shapes.classic_layers(b)[name] for b in (32, 128) for name in ("dense1", "dense2")]


@pytest.mark.parametrize("spec", SHAPES, ids=lambda s: f"{s.name}-b{s.n}")
def test_dense_forward(measure, spec):
    measure(workloads.DenseForward(spec))


@pytest.mark.parametrize("spec", SHAPES, ids=lambda s: f"{s.name}-b{s.n}")
def test_dense_backward(measure, spec):
    measure(workloads.DenseBackward(spec))
