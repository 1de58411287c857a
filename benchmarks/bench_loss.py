"""Softmax cross-entropy forward and backward on the classic CNN's logits (10 classes) at batch 32 and 128.
The PyTorch peer is what its autograd runs: log_softmax + nll_loss forward; nll_loss_backward +
_log_softmax_backward_data backward."""

import pytest

from cnnkern.bench import shapes, workloads

SHAPES = [shapes.classic_layers(b)["loss"] for b in (32, 128)]


@pytest.mark.parametrize("spec", SHAPES, ids=lambda s: f"loss-b{s.n}")
def test_softmax_cross_entropy_forward(measure, spec):
    measure(workloads.LossForward(spec))


@pytest.mark.parametrize("spec", SHAPES, ids=lambda s: f"loss-b{s.n}")
def test_softmax_cross_entropy_backward(measure, spec):
    measure(workloads.LossBackward(spec))
