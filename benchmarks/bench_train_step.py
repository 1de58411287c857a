"""The classic CNN's whole training step (forward, loss, backward, Adam) at batch 32 and 128 and its inference
(forward to class probabilities) at batch 128, through cnnkern's model layer (the model `cnnkern train`
builds) on every backend, against PyTorch in NCHW and in channels_last. Each peer's first two losses are
checked against the same network composed from cnnkern.ops on the reference backend in float64."""

import pytest

from cnnkern.bench import steps

TORCH_FORMATS = ("nchw", "channels_last")


@pytest.mark.parametrize("batch", [32, 128], ids=lambda b: f"b{b}")
def test_train_step(measure, batch):
    measure(steps.TrainStep(batch))


def test_inference(measure):
    measure(steps.Inference(128))
