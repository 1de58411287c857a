"""The model zoo (issue 15; the list and its coverage: benchmarks/NOTES.md, the models: cnnkern/bench/zoo.py):
each model's training step at batch 32 and 128 and its inference at batch 1, 32 and 128, on every backend and
against its PyTorch twin in NCHW and channels_last. Each peer is first checked against the float64 twin."""

import pytest

from cnnkern.bench import zoo

TORCH_FORMATS = ("nchw", "channels_last")


@pytest.mark.parametrize("batch", [32, 128], ids=lambda b: f"b{b}")
@pytest.mark.parametrize("model", list(zoo.ZOO))
def test_zoo_train_step(measure, model, batch):
    measure(zoo.ZooTrainStep(model, batch))


@pytest.mark.parametrize("batch", [1, 32, 128], ids=lambda b: f"b{b}")
@pytest.mark.parametrize("model", list(zoo.ZOO))
def test_zoo_inference(measure, model, batch):
    measure(zoo.ZooInference(model, batch))
