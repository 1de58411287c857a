"""QuantizedModel.export_onnx run by onnxruntime on the classic CNN and a VGG-style model with batch norm,
both trained briefly on the bundled Fashion-MNIST subset: ``exact=True`` (ConvInteger + cnnkern's
fixed-point requantization) gives predict's outputs bit for bit; the default QLinearConv graph rounds in
float32, so a few codes differ by one: its logits stay within one quantization step and at most 0.1% of
the images change class. The VGG model also goes through the whole pipeline (fold, quantize, evaluate,
save, load, float and int8 export)."""

import copy

import numpy as np
import pytest

from cnnkern import cli, layers, models, zoo
from cnnkern.compress import QuantizedModel, fold_batchnorm, quantize
from cnnkern.datasets import fashion_mnist

ort = pytest.importorskip(
    "onnxruntime", reason='the onnx extra is not installed: pip install "cnnkern[onnx]"'
)
pytest.importorskip("onnx", reason='the onnx extra is not installed: pip install "cnnkern[onnx]"')


def _run(path, x):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # no spinning thread pool beside the other tests
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.astype(np.float32)})[0]


@pytest.fixture(scope="module")
def data():
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data(subset=True)
    scale = np.float32(1 / 255)
    return (x_train[..., None] * scale, y_train), (x_test[..., None] * scale, y_test)


def _trained(model, data, n=4000):
    (x, y), _ = data
    model.fit(x[:n], y[:n], batch_size=64, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def classic(data):
    return _trained(zoo.classic_cnn(seed=0), data)


@pytest.fixture(scope="module")
def vgg(data):
    return _trained(zoo.vgg_bn(seed=0, widths=(16, 16, 32, 32), dense=64), data)


def _logits_model(q):
    """The same int8 model without its final softmax (its outputs are the float logits)."""
    config = copy.deepcopy(q.config)
    config["stages"][-1]["activation"] = "linear"
    return QuantizedModel(config, q.arrays)


@pytest.mark.parametrize("name", ["classic", "vgg"])
def test_int8_onnx_matches_predict(name, data, tmp_path, request):
    model = request.getfixturevalue(name)
    (x_train, _), (x_test, _) = data
    q = quantize(model, x_train[:500])
    # exact: the probabilities up to the softmax's float32 rounding, the logits bit for bit
    # (on 500 images: onnxruntime runs the float64 requantization slowly)
    q.export_onnx(tmp_path / "exact.onnx", exact=True)
    some = x_test[:500]
    np.testing.assert_allclose(_run(tmp_path / "exact.onnx", some), q.predict(some), rtol=0, atol=1e-6)
    ql = _logits_model(q)
    want = ql.predict(x_test, batch_size=500)
    ql.export_onnx(tmp_path / "exact_logits.onnx", exact=True)
    np.testing.assert_array_equal(_run(tmp_path / "exact_logits.onnx", some), want[:500])
    # QLinearConv: float32 requantization, ties to even
    ql.export_onnx(tmp_path / "qlinear.onnx")
    got = _run(tmp_path / "qlinear.onnx", x_test)
    step = (want.max() - want.min()) / 255  # one step of the logits quantized to 8 bits over their range
    diff = np.abs(got - want).max(axis=1)
    print(f"{name}: {np.mean(diff > 0):.2%} of the images differ, max {diff.max():.4f} (step {step:.4f})")
    assert diff.max() <= step
    assert np.mean(diff == 0) >= 0.95  # the graph computes the same thing: most images agree exactly
    assert np.mean(got.argmax(1) != want.argmax(1)) <= 0.001
    q.export_onnx(tmp_path / "qlinear_probs.onnx")
    np.testing.assert_allclose(_run(tmp_path / "qlinear_probs.onnx", x_test).sum(axis=1), 1, rtol=1e-5)


def test_vgg_bn_goes_through_the_whole_pipeline(vgg, data, tmp_path):
    """fold -> quantize -> evaluate -> save -> load -> export (float and int8), and `cnnkern quantize` /
    `evaluate` on the saved model: each step agrees with the one before it."""
    (x_train, _), (x_test, y_test) = data
    folded = fold_batchnorm(vgg)
    assert not any(isinstance(layer, layers.BatchNormalization) for layer in folded.layers)
    np.testing.assert_allclose(folded.predict(x_test[:200]), vgg.predict(x_test[:200]), atol=2e-5)
    q = quantize(vgg, x_train[:500])
    assert [s["op"] for s in q.stages] == [
        "conv", "maxpool", "conv", "conv", "maxpool", "conv", "maxpool", "flatten", "dense", "logits"
    ]  # fmt: skip
    assert all(s["relu"] for s in q.stages if s["op"] == "conv")  # BN folded, ReLU fused
    float_acc = vgg.evaluate(x_test, y_test, verbose=0)[1]
    int8_acc = q.evaluate(x_test, y_test)[1]
    assert float_acc > 0.7 and abs(int8_acc - float_acc) <= 0.01
    q.save(tmp_path / "vgg8.npz")
    back = models.load_model(tmp_path / "vgg8.npz")
    assert isinstance(back, QuantizedModel)
    np.testing.assert_array_equal(back.predict(x_test), q.predict(x_test))
    back.export_onnx(tmp_path / "vgg8.onnx", exact=True)
    some = x_test[:300]
    np.testing.assert_allclose(_run(tmp_path / "vgg8.onnx", some), q.predict(some), rtol=0, atol=1e-6)
    # the same from the command line: `cnnkern quantize` (calibrated on the same 500 images), `evaluate`
    vgg.save(tmp_path / "vgg.npz")
    argv = ["quantize", str(tmp_path / "vgg.npz"), "-o", str(tmp_path / "cli8.npz"), "--calibrate", "500"]
    assert cli.main([*argv, "--data", "bundled"]) == 0
    cli8 = models.load_model(tmp_path / "cli8.npz")
    assert abs(cli8.evaluate(x_test, y_test)[1] - int8_acc) <= 0.005
    assert cli.main(["evaluate", str(tmp_path / "cli8.npz"), "--data", "bundled"]) == 0
    vgg.export_onnx(tmp_path / "vgg.onnx")
    np.testing.assert_allclose(
        _run(tmp_path / "vgg.onnx", x_test[:200]), vgg.predict(x_test[:200]), atol=1e-5
    )


def test_int8_export_errors_name_the_stage(classic, data, tmp_path):
    (x_train, _), _ = data
    q = quantize(classic, x_train[:50])
    config = copy.deepcopy(q.config)
    flat = [s["op"] for s in q.stages].index("flatten")
    order = [flat, *range(flat), *range(flat + 1, len(q.stages))]  # the flatten moved before the first conv
    config["stages"] = [config["stages"][i] for i in order]
    bad = QuantizedModel(config, [q.arrays[i] for i in order])
    name = q.stages[0]["name"]
    for exact in (False, True):
        with pytest.raises(ValueError, match=rf"stage 1 \(conv '{name}'\) is a convolution of a flattened"):
            bad.export_onnx(tmp_path / "bad.onnx", exact=exact)
    with pytest.raises(ValueError, match="opset must be >= 13"):
        q.export_onnx(tmp_path / "old.onnx", opset=11)
    assert not (tmp_path / "bad.onnx").exists() and not (tmp_path / "old.onnx").exists()


def test_exact_requantization_equals_the_specification_on_extreme_accumulators():
    """The float64 requantization of exact=True against the reference's integer one, on accumulators over
    the whole int32 range and near every rounding boundary, multipliers over [2**30, 2**31) and shifts
    up to 45, with and without ReLU."""
    import onnx

    from cnnkern.backends.reference.quant import requantize
    from cnnkern.compress.onnx_export import _Graph
    from cnnkern.compress.onnx_int8 import _fixed_point

    rng = np.random.default_rng(0)
    k = 64
    m = rng.integers(1 << 30, 1 << 31, k).astype(np.int32)
    m[:4] = [1 << 30, (1 << 31) - 1, 0, (1 << 30) + (1 << 16) - 1]
    s = rng.integers(1, 46, k).astype(np.int32)
    s[:8] = [45, 45, 45, 1, 31, 40, 44, 45]
    # accumulators at random, at the int32 extremes, and where acc * m / 2**s lands next to a half
    acc = rng.integers(-(1 << 31), 1 << 31, (300, k), dtype=np.int64)
    acc[0], acc[1] = (1 << 31) - 1, -(1 << 31)
    for j in range(k):
        target = rng.integers(-130, 260, 200) + 0.5
        near = np.floor(target * 2.0 ** int(s[j]) / max(int(m[j]), 1)).astype(np.int64)
        acc[2:202, j] = np.clip(near + rng.integers(-1, 2, 200), -(1 << 31), (1 << 31) - 1)
    acc = acc.astype(np.int32)
    for relu, y_zero in ((True, 3), (False, 60)):
        g = _Graph(onnx)
        stage = {"y_zero": y_zero, "relu": relu}
        arr = {"kernel": np.zeros((k, 1), np.int8), "multiplier": m, "shift": s}
        out = _fixed_point(g, "acc", stage, arr, "layer")
        h = onnx.helper
        graph = h.make_graph(
            g.nodes,
            "requant",
            [h.make_tensor_value_info("acc", onnx.TensorProto.INT32, ["N", k])],
            [h.make_tensor_value_info(out, onnx.TensorProto.UINT8, ["N", k])],
            initializer=g.inits,
        )
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        got = session.run(None, {"acc": acc})[0]
        np.testing.assert_array_equal(got, requantize(acc, m, s, y_zero, relu, axis=1))


def test_exact_export_refuses_a_factor_below_its_range(classic, data, tmp_path):
    (x_train, _), _ = data
    q = quantize(classic, x_train[:50])
    arrays = copy.deepcopy(q.arrays)
    arrays[0]["shift"][0] = 50
    with pytest.raises(ValueError, match=rf"stage 0 \(conv '{q.stages[0]['name']}'\).*exact=False"):
        QuantizedModel(q.config, arrays).export_onnx(tmp_path / "x.onnx", exact=True)


def test_every_int8_stage_kind_exports(tmp_path):
    """A stride-2 'same' conv without activation (asymmetric padding, codes with a zero point > 0), a 'same'
    stride-2 max pool (ceil mode), a ReLU on codes, a dilated grouped conv, a hidden dense without
    activation, linear logits; signed inputs (input zero point > 0). exact: equal; QLinearConv: within one
    8-bit step of the outputs' range."""
    m = models.Sequential(backend="reference", dtype="float64", seed=3)
    m.add(layers.Conv2D(6, 3, strides=2, padding="same", input_shape=(12, 11, 3)))
    m.add(layers.MaxPooling2D(3, strides=2, padding="same"))
    m.add(layers.ReLU())
    m.add(layers.Conv2D(8, 3, dilation_rate=2, padding="same", groups=2, activation="relu"))
    m.add(layers.Flatten())
    m.add(layers.Dense(10))
    m.add(layers.Dense(5))
    m.build()
    x = np.random.default_rng(4).normal(size=(64, 12, 11, 3)).astype(np.float32)
    q = quantize(m, x, backend="reference")
    assert [s["op"] for s in q.stages] == ["conv", "maxpool", "relu", "conv", "flatten", "dense", "logits"]
    assert not q.stages[0]["relu"] and q.stages[0]["y_zero"] > 0 and q.input_zero > 0
    assert not q.stages[5]["relu"]
    want = q.predict(x)
    q.export_onnx(tmp_path / "exact.onnx", exact=True)
    np.testing.assert_array_equal(_run(tmp_path / "exact.onnx", x), want)
    q.export_onnx(tmp_path / "qlinear.onnx")
    got = _run(tmp_path / "qlinear.onnx", x)
    assert np.mean(np.all(got == want, axis=1)) >= 0.9
    np.testing.assert_allclose(got, want, atol=(want.max() - want.min()) / 255)
