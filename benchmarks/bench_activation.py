"""Activations forward and backward: ReLU on every activation of the classic CNN (after conv1, conv2, conv3
and dense1) at batch 32 and 128, and the other kinds (leaky ReLU, sigmoid, tanh) on the largest of them
(32x26x26, batch 32). Memory-bound: compare the GB/s in extra_info."""

import pytest

from cnnkern.bench import shapes, workloads

RELU = [shapes.classic_layers(b)[name] for b in (32, 128) for name in ("relu1", "relu2", "relu3", "relu4")]
OTHERS = [shapes.Elementwise(kind, (32, 32, 26, 26), kind) for kind in ("leaky_relu", "sigmoid", "tanh")]
SHAPES = RELU + OTHERS


def _id(spec):
    return f"{spec.name}-b{spec.n}"


@pytest.mark.parametrize("spec", SHAPES, ids=_id)
def test_activation_forward(measure, spec):
    measure(workloads.ActivationForward(spec))


@pytest.mark.parametrize("spec", SHAPES, ids=_id)
def test_activation_backward(measure, spec):
    measure(workloads.ActivationBackward(spec))
