"""Sequential.export_onnx: the exported file run by onnxruntime gives cnnkern's outputs (float32, 1e-5)."""

import numpy as np
import pytest

from cnnkern import layers, models, zoo

from .test_compress import bn_net

ort = pytest.importorskip(
    "onnxruntime", reason='the onnx extra is not installed: pip install "cnnkern[onnx]"'
)
pytest.importorskip("onnx", reason='the onnx extra is not installed: pip install "cnnkern[onnx]"')


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.astype(np.float32)})[0]


def test_classic_cnn_exports(tmp_path):
    m = zoo.classic_cnn(seed=0, backend="cpp")
    x = np.random.default_rng(0).uniform(size=(9, 28, 28, 1)).astype(np.float32)
    m.export_onnx(tmp_path / "m.onnx")
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", x), m.predict(x), rtol=1e-5, atol=1e-5)


def test_every_layer_kind_exports(tmp_path):
    """Batch norms (folded and kept), 'same' padding, stride-2 'same' pools (ceil mode), average pool,
    leaky ReLU, sigmoid, dropout, a linear output."""
    m = bn_net("cpp", "float32")
    x = np.random.default_rng(1).normal(size=(5, 8, 8, 2)).astype(np.float32)
    m.export_onnx(tmp_path / "bn.onnx")
    np.testing.assert_allclose(_run(tmp_path / "bn.onnx", x), m.predict(x), rtol=1e-5, atol=1e-5)
    m2 = models.Sequential(backend="cpp", seed=2)
    m2.add(layers.Conv2D(3, 3, strides=2, padding="same", activation="sigmoid", input_shape=(7, 7, 2)))
    m2.add(layers.MaxPooling2D(3, strides=2, padding="same"))
    m2.add(layers.LeakyReLU(0.2))
    m2.add(layers.AveragePooling2D(2, padding="same"))
    m2.add(layers.Flatten())
    m2.add(layers.Dropout(0.3))
    m2.add(layers.Dense(4, activation="tanh"))
    x = np.random.default_rng(2).normal(size=(3, 7, 7, 2)).astype(np.float32)
    m2.export_onnx(tmp_path / "m2.onnx")
    np.testing.assert_allclose(_run(tmp_path / "m2.onnx", x), m2.predict(x), rtol=1e-5, atol=1e-5)
