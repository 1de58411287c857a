"""conv + ReLU + 2x2 max pool as the one kernel pair the model layer runs for Conv2D(relu) > MaxPooling2D
(ops.conv2d_act_maxpool_forward / _backward), on the classic CNN's two pairs (conv1+pool1, conv2+pool2) at
batch 32 and 128; PyTorch's peer runs the three layers' ATen ops. On the cpp backend the first pair never
writes conv1's full-resolution output."""

import pytest

from cnnkern.bench import shapes, workloads

PAIRS = [pair for b in (32, 128) for pair in shapes.conv_pool_pairs(b).values()]


@pytest.mark.parametrize("spec", PAIRS, ids=lambda s: f"{s.name}-b{s.n}")
def test_conv2d_act_maxpool_forward(measure, spec):
    measure(workloads.ConvPoolForward(spec))


@pytest.mark.parametrize("spec", PAIRS, ids=lambda s: f"{s.name}-b{s.n}")
def test_conv2d_act_maxpool_backward(measure, spec):
    measure(workloads.ConvPoolBackward(spec))
