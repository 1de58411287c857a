"""2x2 max pooling forward and backward (alone, and with the preceding ReLU's gradient folded in, as the model
layer runs it) on the classic CNN's two pooling layers (26->13, 11->5) at batch 32 and 128. Memory-bound:
compare the GB/s in extra_info."""

import pytest

from cnnkern.bench import shapes, workloads

SHAPES = [shapes.classic_layers(b)[name] for b in (32, 128) for name in ("pool1", "pool2")]


@pytest.mark.parametrize("spec", SHAPES, ids=lambda s: f"{s.name}-b{s.n}")
def test_maxpool2d_forward(measure, spec):
    measure(workloads.MaxPoolForward(spec))


@pytest.mark.parametrize("spec", SHAPES, ids=lambda s: f"{s.name}-b{s.n}")
def test_maxpool2d_backward(measure, spec):
    measure(workloads.MaxPoolBackward(spec))


@pytest.mark.parametrize("spec", SHAPES, ids=lambda s: f"{s.name}-b{s.n}")
def test_maxpool2d_act_backward(measure, spec):
    measure(workloads.MaxPoolReluBackward(spec))
