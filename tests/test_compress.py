"""cnnkern.compress: batch-norm folding (predictions equal to the unfolded model's) and the int8 model
(quantize, predict, evaluate, save and load)."""

import copy
import json

import numpy as np
import pytest

from cnnkern import layers, models
from cnnkern.compress import QuantizedModel, fold_batchnorm, quantize

from .conftest import load_backend


def bn_net(backend, dtype, conv_bias=True, seed=1):
    """conv > BN > ReLU > pool > conv(no bias) > BN > flatten > dense > BN > ReLU > dense, plus a BN that
    follows a ReLU (kept: it cannot fold)."""
    m = models.Sequential(backend=backend, dtype=dtype, seed=seed)
    m.add(layers.Conv2D(4, 3, padding="same", use_bias=conv_bias, input_shape=(8, 8, 2)))
    m.add(layers.BatchNormalization())
    m.add(layers.ReLU())
    m.add(layers.MaxPooling2D(2))
    m.add(layers.Conv2D(6, 3, use_bias=False))
    m.add(layers.BatchNormalization(convention="keras"))
    m.add(layers.Flatten())
    m.add(layers.Dense(12))
    m.add(layers.BatchNormalization(scale=False))
    m.add(layers.ReLU())
    m.add(layers.BatchNormalization(center=False))
    m.add(layers.Dense(5))
    m.build()
    rng = np.random.default_rng(seed)
    # random running statistics and affine parameters, so that folding has something to fold
    for layer in m.layers:
        if isinstance(layer, layers.BatchNormalization):
            c = layer.state["moving_mean"].shape[0]
            layer.state["moving_mean"] = m._ctx.asarray(rng.normal(0, 0.5, c))
            layer.state["moving_variance"] = m._ctx.asarray(rng.uniform(0.3, 2.0, c))
            for k in layer.params:
                layer.params[k] = m._ctx.asarray(rng.normal(1 if k == "gamma" else 0, 0.3, c))
    return m


@pytest.mark.parametrize(
    ("backend", "dtype", "tol"), [("reference", "float64", 1e-12), ("cpp", "float32", 2e-5)]
)
def test_fold_batchnorm_keeps_predictions(backend, dtype, tol):
    m = bn_net(backend, dtype)
    x = np.random.default_rng(0).normal(size=(7, 8, 8, 2))
    folded = fold_batchnorm(m)
    kinds = [type(l).__name__ for l in folded.layers]
    assert kinds.count("BatchNormalization") == 1  # only the one after a ReLU is left
    assert folded.layers[1].name == m.layers[2].name and folded.layers[0].use_bias
    want, got = m.predict(x), folded.predict(x)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    assert len(m.layers) == 12  # the source model is untouched


def test_fold_batchnorm_keeps_bn_after_an_activation():
    m = models.Sequential(backend="reference", dtype="float64")
    m.add(layers.Conv2D(2, 3, activation="relu", input_shape=(5, 5, 1)))
    m.add(layers.BatchNormalization())
    assert [type(l).__name__ for l in fold_batchnorm(m).layers] == ["Conv2D", "BatchNormalization"]


# --- int8 --------------------------------------------------------------------------------------------------
def small_cnn(seed=0):
    """conv(same, BN, ReLU) > pool > conv(relu) > flatten > dropout > dense(relu) > dense softmax."""
    m = models.Sequential(backend="reference", dtype="float64", seed=seed)
    m.add(layers.Conv2D(6, 3, padding="same", input_shape=(10, 10, 2)))
    m.add(layers.BatchNormalization())
    m.add(layers.Activation("relu"))
    m.add(layers.MaxPooling2D(2))
    m.add(layers.Conv2D(8, 3, activation="relu"))
    m.add(layers.Flatten())
    m.add(layers.Dropout(0.2))
    m.add(layers.Dense(16, activation="relu"))
    m.add(layers.Dense(4, activation="softmax"))
    m.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


@pytest.fixture(scope="module")
def trained():
    """A small CNN fitted to a learnable rule (the class is the brighter quadrant), its data. Ten epochs:
    with Keras's batch-norm momentum (0.99) the running statistics need them (six left accuracy at 0.6)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    x = rng.uniform(0, 1, size=(400, 2, 5, 2, 5, 2))
    x[np.arange(400), y // 2, :, y % 2] += 0.6
    x = x.reshape(400, 10, 10, 2)
    m = small_cnn()
    m.fit(x[:300], y[:300], batch_size=32, epochs=10, verbose=0)
    return m, x, y


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_quantized_model_tracks_the_float_model(trained, method):
    m, x, y = trained
    q = quantize(m, x[:100], method=method, percentile=99.9, backend="reference")
    assert [s["op"] for s in q.stages] == ["conv", "maxpool", "conv", "flatten", "dense", "logits"]
    assert q.stages[0]["relu"] and q.arrays[0]["kernel"].dtype == np.int8
    pf, pq = m.predict(x[300:]), q.predict(x[300:])
    assert pq.dtype == np.float32 and pq.shape == pf.shape
    np.testing.assert_allclose(pq.sum(axis=1), 1, rtol=1e-5)
    assert np.abs(pq - pf).max() < 0.1
    assert (pq.argmax(1) == pf.argmax(1)).mean() >= 0.95
    float_acc = m.evaluate(x[300:], y[300:])[1]
    loss, acc = q.evaluate(x[300:], y[300:], batch_size=17)
    assert float_acc > 0.6 and abs(acc - float_acc) <= 0.03
    assert loss == pytest.approx(m.evaluate(x[300:], y[300:])[0], abs=0.05)


def test_quantized_model_saves_and_loads(trained, tmp_path):
    m, x, _ = trained
    q = quantize(m, x[:50], backend="reference")
    path = tmp_path / "m8.npz"
    q.save(path)
    back = models.load_model(path, backend="reference")
    assert isinstance(back, QuantizedModel)
    np.testing.assert_array_equal(back.predict(x[:40]), q.predict(x[:40]))
    m.save(tmp_path / "f.npz")  # a float file still loads as before
    assert isinstance(models.load_model(tmp_path / "f.npz", backend="reference"), models.Sequential)


def _rewrite(src, dst, arch=None, **arrays):
    """A copy of the saved model ``src`` with its architecture JSON or some arrays replaced."""
    with np.load(src) as f:
        entries = dict(f)
    if arch is not None:
        entries["__architecture__"] = np.array(json.dumps(arch))
    entries.update(arrays)
    np.savez(dst, **entries)


def test_a_bad_int8_file_is_refused_naming_the_stage(trained, tmp_path):
    m, x, _ = trained
    q = quantize(m, x[:20], backend="reference")
    good = tmp_path / "m8.npz"
    q.save(good)
    cfg = q.get_config()
    bad = copy.deepcopy(cfg)
    bad["stages"][2]["stride"] = [0, 1]
    _rewrite(good, tmp_path / "a.npz", bad)
    with pytest.raises(ValueError, match=r"stage 2 \(conv 'conv2d_1'\): stride must be an int in \[1"):
        models.load_model(tmp_path / "a.npz")
    bad = copy.deepcopy(cfg)
    bad["stages"][0]["units"] = 7
    _rewrite(good, tmp_path / "b.npz", bad)
    with pytest.raises(ValueError, match="shape"):
        models.load_model(tmp_path / "b.npz")
    key = "000." + cfg["stages"][0]["name"] + "/kernel"
    _rewrite(good, tmp_path / "c.npz", **{key: q.arrays[0]["kernel"].astype(np.float32)})
    with pytest.raises(ValueError, match="dtype float32, expected int8"):
        models.load_model(tmp_path / "c.npz")
    _rewrite(good, tmp_path / "d.npz", **{key: np.full_like(q.arrays[0]["kernel"], -128)})
    with pytest.raises(ValueError, match="stage 0: the kernel holds -128"):
        models.load_model(tmp_path / "d.npz")


def test_quantize_refuses_what_has_no_int8_kernel():
    m = models.Sequential(backend="reference")
    m.add(layers.Conv2D(2, 3, activation="tanh", input_shape=(6, 6, 1)))
    m.add(layers.Flatten())
    m.add(layers.Dense(3))
    x = np.zeros((2, 6, 6, 1))
    with pytest.raises(ValueError, match=r"layer 0 \(Conv2D 'conv2d'\) has activation 'tanh'"):
        quantize(m, x)
    m = models.Sequential(backend="reference")
    m.add(layers.Conv2D(2, 3, input_shape=(6, 6, 1)))
    m.add(layers.AveragePooling2D(2))
    m.add(layers.Flatten())
    m.add(layers.Dense(3))
    with pytest.raises(ValueError, match="AveragePooling2D.*has no int8 kernel"):
        quantize(m, x)
    with pytest.raises(ValueError, match="method must be"):
        quantize(m, x, method="entropy")
    with pytest.raises(ValueError, match="int8 model runs on"):
        quantize(small_cnn(), np.zeros((2, 10, 10, 2)), backend="tpu")


def test_int8_model_gives_the_same_outputs_on_every_backend(trained):
    m, x, _ = trained
    q = quantize(m, x[:50], backend="reference")
    want = q.predict(x[:70], batch_size=70)
    for name in ("cpp", "numba"):
        load_backend(name)  # skips (or fails, where CI requires it) with the reason if it cannot run
        q.set_backend(name)
        np.testing.assert_array_equal(q.predict(x[:70], batch_size=70), want, err_msg=name)


def test_cli_quantize_then_evaluate_and_predict(tmp_path, capsys):
    from cnnkern import cli, zoo

    from .test_datasets import make_dataset

    make_dataset(tmp_path / "data", n_train=40, n_test=12)
    zoo.classic_cnn(seed=0, backend="reference").save(tmp_path / "m.npz")
    data = ["--data", str(tmp_path / "data")]
    argv = ["quantize", str(tmp_path / "m.npz"), "-o", str(tmp_path / "m8.npz"), "--calibrate", "30"]
    assert cli.main(argv + data) == 0, capsys.readouterr().err
    assert "30 calibration images" in capsys.readouterr().out
    assert cli.main(["evaluate", str(tmp_path / "m8.npz"), "--backend", "reference", *data]) == 0
    assert "int8" in capsys.readouterr().out
    np.save(tmp_path / "x.npy", np.zeros((3, 28, 28), np.uint8))
    assert cli.main(["predict", str(tmp_path / "m8.npz"), str(tmp_path / "x.npy"), "--labels", "none"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert cli.main(["quantize", str(tmp_path / "m8.npz"), "-o", str(tmp_path / "x8.npz"), *data]) == 1
    assert "already an int8 model" in capsys.readouterr().err


def test_compress_refuses_what_it_cannot_read_as_a_stack():
    """A functional graph, a channels_first layer and a DepthwiseConv2D are refused by name, not misread."""
    import cnnkern
    from cnnkern import layers as L
    from cnnkern.compress import fold_batchnorm

    inp = cnnkern.Input((8, 8, 2))
    x = L.Conv2D(4, 3, padding="same")(inp)
    y = L.Conv2D(4, 3, padding="same")(x)
    out = L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(L.Add()([x, y])))
    with pytest.raises(TypeError, match="Sequential"):
        fold_batchnorm(cnnkern.Model(inp, out, backend="reference"))
    for first in (L.Conv2D(4, 3, data_format="channels_first"), L.DepthwiseConv2D(3)):
        m = cnnkern.Sequential([L.Input((8, 8, 2)), first, L.Flatten(), L.Dense(3)], backend="reference")
        with pytest.raises(ValueError, match="layer 0"):
            fold_batchnorm(m)
