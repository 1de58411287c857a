"""Keras's model surface (cnnkern.model_api): weights and Variables, get_layer, layer get/set_weights,
save_weights / load_weights, predict_on_batch, test_on_batch, model(x), to_json / model_from_json, the
evaluate / predict progress bar, the top-level names and cnnkern.utils; BatchNormalization's Keras defaults
and files written under the old default."""

import io
import json

import numpy as np
import pytest

import cnnkern
from cnnkern import layers, models, utils
from cnnkern.model_api import Progress


def small(seed=0, dtype="float64", backend="reference"):
    m = cnnkern.Sequential(
        [
            layers.Conv2D(3, 3, padding="same", input_shape=(6, 6, 2)),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(4, activation="softmax"),
        ],
        backend=backend,
        dtype=dtype,
        seed=seed,
    )
    m.compile(optimizer="adam", metrics=["accuracy"])
    return m


def data(n=10, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6, 6, 2)), rng.integers(0, 4, n)


def test_weights_follow_get_weights_and_trainability():
    m = small()
    names = [v.path for v in m.weights]
    assert names == [
        "conv2d/kernel",
        "conv2d/bias",
        "batch_normalization/gamma",
        "batch_normalization/beta",
        "batch_normalization/moving_mean",
        "batch_normalization/moving_variance",
        "dense/kernel",
        "dense/bias",
    ]
    for v, a in zip(m.weights, m.get_weights()):
        np.testing.assert_array_equal(v.numpy(), a)
        assert v.shape == a.shape and v.dtype == "float64"
    assert [v.path for v in m.non_trainable_weights] == names[4:6]
    assert len(m.trainable_weights) == 6
    m.get_layer("dense").trainable = False
    assert [v.path for v in m.trainable_weights] == names[:4]
    assert [v.path for v in m.non_trainable_weights] == names[4:]
    # a Variable sees updates and assigns into the layer
    v = m.weights[0]
    before = v.numpy()
    m.train_on_batch(*data())
    assert not np.array_equal(v.numpy(), before)
    v.assign(np.zeros(v.shape))
    assert not m.get_layer(index=0).params["kernel"].any()
    with pytest.raises(ValueError, match="shape"):
        v.assign(np.zeros(3))


def test_get_layer():
    m = small()
    assert m.get_layer("relu") is m.layers[2] and m.get_layer(index=-1) is m.layers[-1]
    with pytest.raises(ValueError, match="no layer named 'nope'.*'conv2d'"):
        m.get_layer("nope")
    with pytest.raises(ValueError, match="out of range"):
        m.get_layer(index=6)
    with pytest.raises(ValueError, match="exactly one"):
        m.get_layer()


def test_layer_get_and_set_weights():
    m = small()
    bn = m.get_layer("batch_normalization")
    w = bn.get_weights()
    assert [a.shape for a in w] == [(3,)] * 4
    new = [np.full(3, float(i + 1)) for i in range(4)]
    bn.set_weights(new)
    new[0][:] = -1  # copies were taken
    np.testing.assert_array_equal(bn.get_weights()[0], np.ones(3))
    with pytest.raises(ValueError, match="needs 4 arrays"):
        bn.set_weights(new[:3])
    with pytest.raises(ValueError, match="shape"):
        bn.set_weights([np.zeros(4)] * 4)
    assert layers.Dense(3).get_weights() == []


def test_save_and_load_weights(tmp_path):
    a, b = small(seed=0), small(seed=7)
    x, y = data()
    a.fit(x, y, epochs=1, batch_size=5, verbose=0)
    a.save_weights(tmp_path / "w.npz")
    with pytest.raises(FileExistsError):
        a.save_weights(tmp_path / "w.npz", overwrite=False)
    b.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(b.predict(x), a.predict(x))
    # float32 model, different layer names: matched by position, cast to the model's dtype
    c = small(seed=3, dtype="float32")
    for layer in c.layers:
        layer.name = "x_" + layer.name
    c.load_weights(tmp_path / "w.npz")
    np.testing.assert_allclose(c.predict(x), a.predict(x), rtol=1e-5, atol=1e-6)
    other = cnnkern.Sequential([layers.Dense(4, input_shape=(3,), activation="softmax")], backend="reference")
    with pytest.raises(ValueError, match="holds 8 weights"):
        other.load_weights(tmp_path / "w.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a saved cnnkern model"):
        b.load_weights(tmp_path / "junk.npz")


def test_on_batch_and_call():
    m = small()
    x, y = data(7)
    np.testing.assert_array_equal(m.predict_on_batch(x), m.predict(x, batch_size=7))
    np.testing.assert_array_equal(m(x), m.predict(x))
    before = m.get_weights()
    loss, acc = m.test_on_batch(x, y)
    assert [loss, acc] == m.evaluate(x, y, batch_size=7)
    assert m.test_on_batch(x, y, return_dict=True) == {"loss": loss, "accuracy": acc}
    for a, b in zip(before, m.get_weights()):  # nothing updated
        np.testing.assert_array_equal(a, b)
    # training=True: batch statistics and dropout, running statistics updated, as Keras
    bn = m.get_layer("batch_normalization")
    out = m(x, training=True)
    assert out.shape == (7, 4) and not np.allclose(out, m(x))
    assert bn.state["moving_mean"].any()
    assert all(getattr(l, "_x", None) is None for l in m.layers)  # nothing kept for a backward


def test_to_json_and_model_from_json():
    m = small()
    text = m.to_json()
    assert json.loads(text)["class_name"] == "Sequential" and "compile" not in json.loads(text)["config"]
    back = cnnkern.models.model_from_json(text, backend="reference")
    assert back.to_json() == text
    assert [type(l) for l in back.layers] == [type(l) for l in m.layers]
    assert back.count_params() == m.count_params() and not back.compiled
    bad = json.loads(text)
    bad["config"]["layers"][0]["config"]["filters"] = -1
    with pytest.raises(ValueError, match="model_from_json: layer 0.*filters"):
        cnnkern.model_from_json(json.dumps(bad))
    with pytest.raises(ValueError, match="not JSON"):
        cnnkern.model_from_json("{")
    with pytest.raises(ValueError, match="Sequential"):
        cnnkern.model_from_json('{"class_name": "Functional", "config": {}}')


def test_evaluate_and_predict_progress(capsys):
    m = small()
    x, y = data(10)
    m.evaluate(x, y, batch_size=4, verbose=1)
    m.predict(x, batch_size=4, verbose=2)
    m.predict(x, verbose=0)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert out[0].startswith("3/3 [==============================] - ") and "ms/step - loss: " in out[0]
    assert "accuracy: " in out[0]
    assert out[1].startswith("3/3 - ") and "ms/step" in out[1]


def test_progress_redraws_on_a_terminal():
    class Screen(io.StringIO):
        def isatty(self):
            return True

    screen = Screen()
    bar = Progress(3, 1, file=screen)
    bar.last_draw = -1.0  # due at once
    bar.update(0)
    bar.end({"loss": 0.5})
    text = screen.getvalue()
    assert text.startswith("\r1/3 [=========>") and "\r3/3 [" in text and text.endswith("loss: 0.5000\n")


def test_top_level_names_and_utils():
    assert cnnkern.Sequential is models.Sequential and cnnkern.layers is layers and cnnkern.utils is utils
    assert cnnkern.load_model is models.load_model
    onehot = utils.to_categorical([[2], [0], [1]])
    np.testing.assert_array_equal(onehot, np.eye(3, dtype=np.float32)[[2, 0, 1]])
    assert onehot.dtype == np.float32 and utils.to_categorical([1, 0], 4).shape == (2, 4)
    with pytest.raises(ValueError, match="outside"):
        utils.to_categorical([3], num_classes=3)
    with pytest.raises(TypeError, match="integer"):
        utils.to_categorical([0.5])
    n = utils.normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(n, [[0.6, 0.8], [0.0, 0.0]])


def test_batch_norm_defaults_are_keras_and_old_files_keep_torch(tmp_path):
    """A file written when convention 'torch' was the default names it and loads with PyTorch's numbers; a
    config without the key (older than the key) loads as 'torch' too; new layers get Keras's numbers."""
    m = cnnkern.Sequential(
        [layers.BatchNormalization(convention="torch", input_shape=(3,))],
        backend="reference",
        dtype="float64",
    )
    m.save(tmp_path / "old.npz")
    back = models.load_model(tmp_path / "old.npz", backend="reference")
    bn = back.layers[0]
    assert (bn.convention, bn.momentum, bn.epsilon) == ("torch", 0.1, 1e-5)
    cfg = json.loads(m.to_json())
    del cfg["config"]["layers"][0]["config"]["convention"]
    del cfg["config"]["layers"][0]["config"]["momentum"]
    del cfg["config"]["layers"][0]["config"]["epsilon"]
    bn = cnnkern.model_from_json(json.dumps(cfg), backend="reference").layers[0]
    assert (bn.convention, bn.momentum, bn.epsilon) == ("torch", 0.1, 1e-5)
    bn = layers.BatchNormalization()
    assert (bn.convention, bn.momentum, bn.epsilon) == ("keras", 0.99, 1e-3)


def test_model_from_json_rebuilds_a_functional_model():
    from .test_graph_models import resnet

    m = resnet(backend="reference", seed=0)
    text = m.to_json()
    assert json.loads(text)["class_name"] == "Model"
    back = cnnkern.model_from_json(text, backend="reference")
    assert isinstance(back, cnnkern.Model) and not isinstance(back, cnnkern.Sequential)
    assert back.to_json() == text and back.count_params() == m.count_params()
    back.set_weights(m.get_weights())
    x = np.random.default_rng(0).standard_normal((3, 12, 12, 1))
    np.testing.assert_array_equal(back.predict(x), m.predict(x))
    bad = json.loads(text)
    bad["config"]["layers"][3]["inbound"] = ["no_such_layer"]
    with pytest.raises(ValueError, match="model_from_json: layer 3.*inbound"):
        cnnkern.model_from_json(json.dumps(bad))
