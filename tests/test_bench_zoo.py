"""The model zoo of ``cnnkern bench --zoo`` (issue 15): every model agrees with its PyTorch twin before it is
timed, the check has teeth, the twin pads like TensorFlow, the command line refuses what it cannot do, and a
tiny run end to end. Timings are not checked (machine noise); only that each candidate was checked and timed.
"""

import json

import numpy as np
import pytest

from cnnkern import cli
from cnnkern.bench import zoo
from cnnkern.bench.twin import same_padding

from .conftest import load_backend

torch = pytest.importorskip("torch", reason="the zoo's twins and its check need PyTorch")

MODELS = list(zoo.ZOO)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("workload", [zoo.ZooTrainStep, zoo.ZooInference])
def test_each_model_matches_its_twin_on_cpp_and_in_both_torch_layouts(name, workload):
    w = workload(name, 3)
    assert w.verify(w.bind(load_backend("cpp"))) is None
    for fmt in ("nchw", "channels_last"):
        assert w.verify(w.bind_torch(fmt)) is None, fmt


@pytest.mark.parametrize("backend_name", ["numba", "reference"])
@pytest.mark.parametrize("name", ["vgg_bn", "mobile"])
def test_batch_norm_and_grouped_models_match_on_the_other_backends(backend_name, name):
    w = zoo.ZooTrainStep(name, 2)
    assert w.verify(w.bind(load_backend(backend_name))) is None


@pytest.mark.parametrize("workload, error", [(zoo.ZooTrainStep, 0.1), (zoo.ZooInference, 0.01)])
def test_the_check_catches_a_wrong_weight(workload, error):
    """Inference is checked to 1e-3 of the largest logit: a 1% error in one layer shows. After two Adam
    steps float32 noise is larger (ZooTrainStep.logits_rtol): a 10% error must show there."""
    w = workload("mobile", 2)
    bound = w.bind(load_backend("cpp"))
    weights = bound.target.get_weights()
    weights[0] = weights[0] * (1 + error)  # the first conv kernel
    bound.target.set_weights(weights)
    assert w.verify(bound) is not None


def test_the_check_switches_dropout_off_and_back_on():
    w = zoo.ZooTrainStep("wide_head", 4)
    bound = w.bind(load_backend("cpp"))
    rates = [l.rate for l in bound.target.layers if type(l).__name__ == "Dropout"]
    assert rates == [0.5]
    assert w.verify(bound) is None  # with dropout on, two steps would not match the twin's
    assert [l.rate for l in bound.target.layers if type(l).__name__ == "Dropout"] == rates
    tw = w.bind_torch()
    assert w.verify(tw) is None
    assert [m.p for m in tw.target.modules() if isinstance(m, torch.nn.Dropout)] == rates


@pytest.mark.parametrize(
    "size, kernel, stride, dilation, want",
    [
        (28, 3, 1, 1, (1, 1)),
        (28, 3, 2, 1, (0, 1)),
        (32, 5, 1, 1, (2, 2)),
        (7, 3, 2, 1, (1, 1)),
        (8, 3, 1, 2, (2, 2)),
    ],
)
def test_same_padding_puts_the_odd_pixel_at_the_end(size, kernel, stride, dilation, want):
    assert same_padding(size, kernel, stride, dilation) == want
    before, after = want
    out = (size + before + after - (kernel - 1) * dilation - 1) // stride + 1
    assert out == -(-size // stride)


def test_the_zoo_covers_what_the_issue_lists():
    from cnnkern import layers as L

    seen = set()
    for name in MODELS:
        m = zoo.build(name, backend="reference")
        seen.add(("channels", m.input_shape[2]))
        seen.add(("size", m.input_shape[0]))
        for layer in m.layers:
            seen.add(type(layer).__name__)
            if isinstance(layer, L.Conv2D):
                seen |= {
                    ("padding", layer.padding),
                    ("kernel", layer.kernel_size[0]),
                    ("stride", layer.strides[0]),
                }
                if layer.groups > 1:
                    seen.add("depthwise" if layer.groups == layer.in_shape[0] == layer.filters else "grouped")
            if isinstance(layer, L.Dense) and layer.units >= 512:
                seen.add("wide dense")
            seen.add(("act", getattr(layer, "activation", None)))
    want = {
        ("channels", 1),
        ("channels", 3),
        ("size", 28),
        ("size", 32),
        ("size", 64),
        ("padding", "same"),
        ("padding", "valid"),
        ("stride", 2),
        ("kernel", 1),
        ("kernel", 5),
        "depthwise",
        "grouped",
        "BatchNormalization",
        "MaxPooling2D",
        "AveragePooling2D",
        "Dropout",
        "wide dense",
        ("act", "relu"),
        ("act", "leaky_relu"),
        ("act", "tanh"),
        ("act", "sigmoid"),
    }
    assert want <= seen, want - seen


def test_zoo_command_line_errors(capsys):
    for argv, message in (
        (["bench", "--zoo", "nope"], "unknown model 'nope'"),
        (["bench", "--zoo", "--profile"], "does not combine"),
        (["bench", "--zoo", "lenet5", "--only", "steps"], "does not combine"),
    ):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_a_tiny_zoo_run_checks_and_times_every_candidate(tmp_path, monkeypatch):
    for var in ("CNNKERN_NUM_THREADS", "NUMBA_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    path = tmp_path / "zoo.json"
    argv = ["bench", "--zoo", "lenet5", "--backends", "cpp,torch", "--batch", "1,2", "--quick"]
    status = cli.main([*argv, "--repeat", "2", "--threads", "1", "--json", str(path)])
    assert status == 0
    results = json.loads(path.read_text())["results"]
    assert [r["label"] for r in results] == [
        "zoo lenet5 training step b2",
        "zoo lenet5 inference b1",
        "zoo lenet5 inference b2",
    ]
    for r in results:
        for name, c in r["candidates"].items():
            assert c["status"] == "ok", (r["label"], name, c["status"])
            assert len(c["samples_s"]) == 2 and np.isfinite(c["median_s"])
        assert r["candidates"]["torch"]["vs_torch"] == 1.0
