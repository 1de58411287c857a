"""Layers on their own: Keras argument names and defaults, output shapes and parameter counts, initializers,
'same' pooling, batch-norm conventions, dropout, flatten order, and argument errors."""

import numpy as np
import pytest

from cnnkern import initializers, layers, models, ops
from cnnkern.kernels import ELEMENTWISE_ACTIVATIONS


def build(layer_list, input_shape, dtype="float64", seed=0):
    m = models.Sequential(layer_list, backend="reference", dtype=dtype, seed=seed)
    m.build(input_shape)
    return m


def test_keras_defaults():
    c = layers.Conv2D(8, 3)
    assert (c.strides, c.padding, c.dilation_rate, c.use_bias, c.activation) == (
        (1, 1),
        "valid",
        (1, 1),
        True,
        "linear",
    )
    assert c.kernel_initializer is initializers.glorot_uniform and c.bias_initializer is initializers.zeros
    d = layers.Dense(4)
    assert d.kernel_initializer is initializers.glorot_uniform and d.use_bias
    p = layers.MaxPooling2D()
    assert p.pool_size == (2, 2) and p.strides == (2, 2) and p.padding == "valid"
    assert layers.AveragePooling2D(3, strides=1).strides == (1, 1)
    assert layers.LeakyReLU().alpha == 0.3 and layers.LeakyReLU(alpha=0.1).alpha == 0.1
    bn = layers.BatchNormalization()
    assert (bn.convention, bn.momentum, bn.epsilon) == ("keras", 0.99, 1e-3)
    bn = layers.BatchNormalization(convention="torch")
    assert (bn.momentum, bn.epsilon) == (0.1, 1e-5)


@pytest.mark.parametrize(
    "layer, in_shape, out_shape, n_params",
    [
        (layers.Conv2D(32, (3, 3)), (28, 28, 1), (None, 26, 26, 32), 320),
        (layers.Conv2D(16, 5, padding="same"), (9, 7, 3), (None, 9, 7, 16), 16 * 3 * 25 + 16),
        (layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False), (9, 8, 2), (None, 5, 4, 4), 72),
        (
            layers.Conv2D(4, (3, 1), strides=(2, 1), dilation_rate=(1, 1)),
            (9, 8, 2),
            (None, 4, 8, 4),
            4 * 2 * 3 + 4,
        ),
        (layers.Conv2D(6, 3, groups=2), (5, 5, 4), (None, 3, 3, 6), 6 * 2 * 9 + 6),
        (layers.MaxPooling2D((2, 2)), (11, 11, 64), (None, 5, 5, 64), 0),
        (layers.MaxPooling2D(2, padding="same"), (11, 10, 3), (None, 6, 5, 3), 0),
        (layers.AveragePooling2D(3, strides=2, padding="same"), (7, 8, 3), (None, 4, 4, 3), 0),
        (layers.BatchNormalization(), (4, 4, 5), (None, 4, 4, 5), 20),
        (layers.BatchNormalization(center=False), (6,), (None, 6), 18),
        (layers.Flatten(), (3, 3, 64), (None, 576), 0),
        (layers.Dense(64), (576,), (None, 64), 36928),
        (layers.Dense(10, use_bias=False), (64,), (None, 10), 640),
        (layers.Dropout(0.5), (7,), (None, 7), 0),
        (layers.Activation("tanh"), (2, 2, 2), (None, 2, 2, 2), 0),
    ],
)
def test_output_shapes_and_parameter_counts(layer, in_shape, out_shape, n_params):
    m = build([layer], in_shape)
    assert layers.keras_shape(layer.output_shape) == out_shape
    assert layer.count_params() == n_params
    x = np.random.default_rng(0).standard_normal((2, *in_shape))
    assert m.predict(x).shape == (2, *out_shape[1:])


def test_weights_are_canonical_layout():
    conv, dense = layers.Conv2D(5, (3, 2)), layers.Dense(7)
    build([conv, layers.Flatten(), dense], (6, 6, 4))
    assert conv.params["kernel"].shape == (5, 4, 3, 2) and conv.params["bias"].shape == (5,)
    assert dense.params["kernel"].shape == (7, 5 * 4 * 5)


def test_conv_matches_a_direct_nhwc_computation():
    """The model's one NHWC->NCHW conversion and the kernel layout give Keras's result on NHWC data."""
    conv = layers.Conv2D(3, (2, 3), activation="relu")
    m = build([conv], (4, 5, 2))
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 2))
    w, b = conv.params["kernel"], conv.params["bias"]
    want = np.zeros((2, 3, 3, 3))
    for i in range(3):
        for j in range(3):
            want[:, i, j, :] = np.einsum("nrsc,kcrs->nk", x[:, i : i + 2, j : j + 3, :], w) + b
    np.testing.assert_allclose(m.predict(x), np.maximum(want, 0), rtol=1e-12, atol=1e-12)


def test_flatten_is_channel_major():
    m = build([layers.Flatten()], (2, 3, 4))
    x = np.arange(24.0).reshape(1, 2, 3, 4)  # NHWC
    np.testing.assert_array_equal(m.predict(x)[0], x[0].transpose(2, 0, 1).ravel())


def test_same_pooling_matches_tensorflow_padding():
    """'same' max pooling on an odd size pads at the end only (TensorFlow), ignoring the padding."""
    m = build([layers.MaxPooling2D(2, padding="same")], (3, 3, 1))
    x = np.arange(9.0).reshape(1, 3, 3, 1) - 20.0  # all negative: a zero pad would show up
    np.testing.assert_array_equal(m.predict(x)[..., 0], [[[-16.0, -15.0], [-13.0, -12.0]]])
    m = build([layers.AveragePooling2D(2, padding="same")], (3, 3, 1))
    np.testing.assert_allclose(m.predict(x + 20.0)[..., 0], [[[2.0, 3.5], [6.5, 8.0]]])
    with pytest.raises(ValueError, match="padding='same'"):
        build([layers.MaxPooling2D(2, strides=1, padding="same")], (4, 4, 1)).predict(np.zeros((1, 4, 4, 1)))


def _train_bn(bn, x):
    m = models.Sequential(
        [bn, layers.Flatten(), layers.Dense(2, activation="softmax")],
        backend="reference",
        dtype="float64",
        seed=0,
    )
    m.compile(optimizer="sgd")
    m.train_on_batch(x, np.array([0, 1] * (len(x) // 2)))
    return bn


def test_batch_norm_conventions():
    x = np.random.default_rng(2).standard_normal((4, 3, 3, 2)) * 3 + 1
    c = x.transpose(3, 0, 1, 2).reshape(2, -1)
    mean, var_b = c.mean(axis=1), c.var(axis=1)
    var_u = var_b * c.shape[1] / (c.shape[1] - 1)
    torch_bn = _train_bn(layers.BatchNormalization(convention="torch"), x)
    np.testing.assert_allclose(torch_bn.state["moving_mean"], 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(torch_bn.state["moving_variance"], 0.9 + 0.1 * var_u, rtol=1e-12)
    keras_bn = _train_bn(layers.BatchNormalization(), x)
    np.testing.assert_allclose(keras_bn.state["moving_mean"], 0.01 * mean, rtol=1e-12)
    np.testing.assert_allclose(keras_bn.state["moving_variance"], 0.99 + 0.01 * var_b, rtol=1e-10)
    # inference uses the running statistics and the convention's epsilon
    m = build([keras_bn], (3, 3, 2))
    rm, rv = keras_bn.state["moving_mean"], keras_bn.state["moving_variance"]
    np.testing.assert_allclose(
        m.predict(x),
        (x - rm) / np.sqrt(rv + 1e-3) * keras_bn.params["gamma"] + keras_bn.params["beta"],
        rtol=1e-12,
        atol=1e-12,
    )


def test_batch_norm_on_flat_features():
    bn = layers.BatchNormalization()
    m = models.Sequential(
        [layers.Dense(4, input_shape=(3,)), bn, layers.Dense(2, activation="softmax")],
        backend="reference",
        dtype="float64",
        seed=0,
    )
    m.compile(optimizer="sgd")
    m.train_on_batch(np.random.default_rng(0).standard_normal((5, 3)), np.array([0, 1, 0, 1, 1]))
    assert bn.grads["gamma"].shape == (4,) and np.any(bn.state["moving_mean"] != 0)


def test_dropout():
    drop = layers.Dropout(0.25)
    m = models.Sequential(
        [
            layers.Dense(400, input_shape=(50,), kernel_initializer="ones"),
            drop,
            layers.Dense(2, activation="softmax"),
        ],
        backend="reference",
        dtype="float64",
        seed=0,
    )
    m.compile(optimizer="sgd")
    m.build()
    x = np.ones((10, 50))
    y = drop.forward(np.ones((10, 400)), training=True)
    kept = y != 0
    assert 0.65 < kept.mean() < 0.85 and np.allclose(y[kept], 1 / 0.75)
    np.testing.assert_array_equal(drop.backward(np.full((10, 400), 2.0)), np.where(kept, 2 / 0.75, 0.0))
    np.testing.assert_array_equal(drop.forward(np.ones((3, 400)), training=False), np.ones((3, 400)))
    p1, p2 = m.predict(x), m.predict(x)
    np.testing.assert_array_equal(p1, p2)  # inference is deterministic


def test_initializers_statistics_and_seeding():
    rng = np.random.default_rng(0)
    n_in, n_out = 400, 300
    w = initializers.he_normal((n_out, n_in), n_in, n_out, rng)
    assert w.std() == pytest.approx(np.sqrt(2 / n_in), rel=0.02)
    assert np.abs(w).max() <= 2 * np.sqrt(2 / n_in) / 0.87962566103423978 + 1e-12
    w = initializers.he_uniform((n_out, n_in), n_in, n_out, rng)
    assert np.abs(w).max() <= np.sqrt(6 / n_in) and w.std() == pytest.approx(np.sqrt(2 / n_in), rel=0.02)
    w = initializers.glorot_uniform((n_out, n_in), n_in, n_out, rng)
    assert np.abs(w).max() <= np.sqrt(6 / (n_in + n_out))
    assert w.std() == pytest.approx(np.sqrt(2 / (n_in + n_out)), rel=0.02)
    w = initializers.glorot_normal((n_out, n_in), n_in, n_out, rng)
    assert w.std() == pytest.approx(np.sqrt(2 / (n_in + n_out)), rel=0.02)
    conv = layers.Conv2D(300, 3, kernel_initializer="he_normal")
    build([conv], (5, 5, 40))
    assert conv.params["kernel"].std() == pytest.approx(np.sqrt(2 / (40 * 9)), rel=0.02)
    assert not conv.params["bias"].any()
    with pytest.raises(ValueError, match="initializer"):
        layers.Dense(3, kernel_initializer="lecun_normal")


def test_parameters_live_in_the_model_dtype():
    dense = layers.Dense(3)
    build([dense], (4,), dtype="float32")
    assert dense.params["kernel"].dtype == np.float32


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: layers.Conv2D(0, 3), "filters"),
        (lambda: layers.Conv2D(8, (3, 3, 3)), "kernel_size"),
        (lambda: layers.Conv2D(8, 3, padding="full"), "padding"),
        (lambda: layers.Conv2D(8, 3, data_format="NCHW"), "data_format"),
        (lambda: layers.Conv2D(8, 3, activation="gelu"), "activation"),
        (lambda: layers.Conv2D(8, 3, groups=3), "groups"),
        (lambda: layers.MaxPooling2D(0), "pool_size"),
        (lambda: layers.Dense(-1), "units"),
        (lambda: layers.Dropout(1.0), "rate"),
        (lambda: layers.LeakyReLU(-0.1), "negative_slope"),
        (lambda: layers.BatchNormalization(axis=2), "axis"),
        (lambda: layers.BatchNormalization(convention="tf"), "convention"),
        (lambda: layers.BatchNormalization(epsilon=0.0), "epsilon"),
        (lambda: layers.Dense(3, input_shape=(2, 2)), "input_shape"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_build_errors_name_the_layer():
    with pytest.raises(ValueError, match="dense.*Flatten"):
        build([layers.Dense(3)], (4, 4, 1))
    with pytest.raises(ValueError, match="conv2d.*image input"):
        build([layers.Conv2D(3, 3)], (16,))
    with pytest.raises(ValueError, match="does not fit"):
        build([layers.Conv2D(3, 5)], (4, 4, 1))
    with pytest.raises(ValueError, match="only allowed on the first layer"):
        models.Sequential([layers.Dense(3, input_shape=(2,)), layers.Dense(2, input_shape=(3,))])
    with pytest.raises(ValueError, match="used twice"):
        models.Sequential([layers.Dense(3, name="a"), layers.Dense(2, name="a")])


@pytest.mark.parametrize("kind", ELEMENTWISE_ACTIVATIONS)
def test_table_elementwise_activation_in_layers(kind):
    """activation='<a>' for a pair of the table (kernels.ELEMENTWISE_ACTIVATIONS) on Dense and as an
    Activation layer: forward and backward equal the unfused ops, the gradient taken from the input."""
    ref = {"backend": "reference"}

    def fwd(x):
        return getattr(ops, f"{kind}_forward")(x, **ref)

    def bwd(dy, x):
        return getattr(ops, f"{kind}_backward")(dy, x, **ref)

    m = build([layers.Dense(3, activation=kind), layers.Activation(kind)], (4,))
    dense, act = m.layers
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    z = ops.dense_forward(x, dense.params["kernel"], dense.params["bias"], **ref)
    h = dense.forward(x, training=True)
    np.testing.assert_array_equal(h, fwd(z))
    np.testing.assert_array_equal(act.forward(h, training=True), fwd(h))
    dh = act.backward(dy)
    np.testing.assert_array_equal(dh, bwd(dy, h))
    dx = dense.backward(dh)
    want, _, _ = ops.dense_backward(bwd(dh, z), x, dense.params["kernel"], **ref)
    np.testing.assert_array_equal(dx, want)
    assert dense.get_config()["activation"] == kind
