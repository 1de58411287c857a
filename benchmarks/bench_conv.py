"""conv2d forward and backward: the classic CNN's three convolutions at batch 32 and 128, and two ResNet-like
3x3 convolutions (64->64 56x56, 128->128 28x28, pad 1, batch 8). The first conv's backward computes dw and
db only, as in training."""

import pytest

from cnnkern.bench import shapes, workloads

SHAPES = [shapes.classic_layers(b)[name] for b in (32, 128) for name in ("conv1", "conv2", "conv3")]
SHAPES += list(shapes.resnet_convs().values())


@pytest.mark.parametrize("spec", SHAPES, ids=lambda s: f"{s.name}-b{s.n}")
def test_conv2d_forward(measure, spec):
    measure(workloads.ConvForward(spec))


@pytest.mark.parametrize("spec", SHAPES, ids=lambda s: f"{s.name}-b{s.n}")
def test_conv2d_backward(measure, spec):
    measure(workloads.ConvBackward(spec))
