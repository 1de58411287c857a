"""cnnkern.compress: batch-norm folding (predictions equal to the unfolded model's) and the int8 model
(quantize, predict, evaluate, save and load)."""

import numpy as np
import pytest

from cnnkern import layers, models
from cnnkern.compress import fold_batchnorm


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
