"""DepthwiseConv2D, SeparableConv2D, ZeroPadding2D, Reshape and Rescaling: forward and backward (input and
weight gradients) against PyTorch twins in float64 on the reference backend, and every backend in float32
against the float64 reference; shapes, parameter counts, configs and argument errors."""

import numpy as np
import pytest

from cnnkern import layers, models

torch = pytest.importorskip("torch", reason="PyTorch not installed: pip install 'cnnkern[torch]'")
F = torch.nn.functional


def run(layer_fn, x, dy_seed=5, backend="reference", dtype="float64", weights=None):
    """A fresh layer from ``layer_fn`` in a one-layer model: (y, dx, {weight: grad}, layer), all NumPy in the
    internal NCHW layout; ``weights`` (NumPy, canonical) replace the initial ones."""
    layer = layer_fn()
    m = models.Sequential([layer], backend=backend, dtype=dtype, seed=0)
    m.build(x.shape[1:])
    if weights is not None:
        layer.set_weights(weights)
    X = m._to_internal(x)
    y = layer.forward(X, training=True)
    dy = np.random.default_rng(dy_seed).standard_normal(y.shape)
    dx = layer.backward(m._ctx.asarray(dy))
    grads = {k: layers.to_numpy(g) for k, g in layer.grads.items()}
    return layers.to_numpy(y), layers.to_numpy(dx), dy, grads, layer


def tf_same(x, k, s, d=1):
    """TensorFlow's 'same' padding of an NCHW torch tensor: the odd pixel at the bottom / right."""
    pads = []
    for length, kk, ss in zip(x.shape[2:], k, s):
        total = max((-(-length // ss) - 1) * ss + (kk - 1) * d + 1 - length, 0)
        pads.append((total // 2, total - total // 2))
    (t, b), (l, r) = pads
    return F.pad(x, (l, r, t, b))


def torch_grads(fn, x, dy, params):
    """(y, dx, [dparam]) of ``fn(x, *params)`` by autograd, float64."""
    tx = torch.tensor(x, requires_grad=True)
    tp = [torch.tensor(p, requires_grad=True) for p in params]
    y = fn(tx, *tp)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), tx.grad.numpy(), [p.grad.numpy() for p in tp]


CASES = [
    dict(kernel_size=3, padding="same", depth_multiplier=1),
    dict(kernel_size=3, strides=2, padding="same", depth_multiplier=2, activation="relu"),
    dict(kernel_size=(3, 2), padding="valid", depth_multiplier=3, use_bias=False, activation="tanh"),
    dict(kernel_size=3, strides=2, padding="valid", dilation_rate=1),
]


def _nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _act(y, kind):
    return {None: y, "relu": torch.relu(y) if kind == "relu" else y, "tanh": torch.tanh(y)}[kind]


@pytest.mark.parametrize("kw", CASES)
def test_depthwise_matches_pytorch(kw):
    x = np.random.default_rng(1).standard_normal((2, 7, 8, 3))
    y, dx, dy, grads, layer = run(lambda: layers.DepthwiseConv2D(**kw), x)
    c, mult = 3, kw.get("depth_multiplier", 1)
    assert layer.params["depthwise_kernel"].shape == (c * mult, 1, *layer.kernel_size)
    params = [layer.params["depthwise_kernel"]] + ([layer.params["bias"]] if layer.use_bias else [])
    s = layer.strides

    def fn(tx, w, b=None):
        tx = tf_same(tx, layer.kernel_size, s) if layer.padding == "same" else tx
        return _act(F.conv2d(tx, w, b, stride=s, groups=c), kw.get("activation"))

    ty, tdx, tgrads = torch_grads(fn, _nchw(x), dy, params)
    np.testing.assert_allclose(y, ty, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, tdx, rtol=1e-12, atol=1e-12)
    for key, g in zip(["depthwise_kernel", "bias"], tgrads):
        np.testing.assert_allclose(grads[key], g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kw", CASES)
def test_separable_matches_pytorch(kw):
    x = np.random.default_rng(2).standard_normal((2, 7, 8, 3))
    y, dx, dy, grads, layer = run(lambda: layers.SeparableConv2D(5, **kw), x)
    c, mult = 3, kw.get("depth_multiplier", 1)
    assert layer.params["pointwise_kernel"].shape == (5, c * mult, 1, 1)
    names = ["depthwise_kernel", "pointwise_kernel"] + (["bias"] if layer.use_bias else [])
    assert list(layer.params) == names
    s = layer.strides

    def fn(tx, dw, pw, b=None):
        tx = tf_same(tx, layer.kernel_size, s) if layer.padding == "same" else tx
        return _act(F.conv2d(F.conv2d(tx, dw, stride=s, groups=c), pw, b), kw.get("activation"))

    ty, tdx, tgrads = torch_grads(fn, _nchw(x), dy, [layer.params[k] for k in names])
    np.testing.assert_allclose(y, ty, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, tdx, rtol=1e-12, atol=1e-12)
    for key, g in zip(names, tgrads):
        np.testing.assert_allclose(grads[key], g, rtol=1e-12, atol=1e-12)


def test_zero_padding_reshape_rescaling_match_pytorch():
    x = np.random.default_rng(3).standard_normal((2, 4, 5, 3))
    y, dx, dy, _, _ = run(lambda: layers.ZeroPadding2D(((1, 2), (0, 3))), x)
    ty, tdx, _ = torch_grads(lambda t: F.pad(t, (0, 3, 1, 2)), _nchw(x), dy, [])
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(dx, tdx)
    y, dx, dy, _, _ = run(lambda: layers.Rescaling(1 / 255, offset=-0.5), x)
    ty, tdx, _ = torch_grads(lambda t: t * (1 / 255) - 0.5, _nchw(x), dy, [])
    np.testing.assert_allclose(y, ty, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(dx, tdx, rtol=1e-15)
    # Reshape takes the channel-major order of Flatten: (C, H, W) -> flat -> (C', H', W')
    y, dx, dy, _, layer = run(lambda: layers.Reshape((10, 2, -1)), x)
    assert layers.keras_shape(layer.output_shape) == (None, 10, 2, 3)
    ty, tdx, _ = torch_grads(lambda t: t.reshape(2, 3, 10, 2), _nchw(x), dy, [])
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(dx, tdx)


LAYERS = [
    lambda: layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu"),
    lambda: layers.DepthwiseConv2D(3, strides=2, padding="same"),
    lambda: layers.SeparableConv2D(6, 3, strides=2, padding="same", activation="relu"),
    lambda: layers.SeparableConv2D(4, (2, 3), depth_multiplier=2, use_bias=False),
    lambda: layers.ZeroPadding2D(2),
    lambda: layers.Rescaling(0.5, 1.0),
    lambda: layers.Reshape((-1,)),
]


@pytest.mark.parametrize("make", LAYERS)
def test_every_backend_matches_the_reference(plain_target, make):
    x = np.random.default_rng(4).standard_normal((3, 9, 8, 4))
    ry, rdx, _, rgrads, ref = run(make, x)
    weights = ref.get_weights()
    y, dx, _, grads, _ = run(
        make, x.astype(np.float32), backend=plain_target.backend, dtype="float32", weights=weights
    )
    np.testing.assert_allclose(y, ry, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, rdx, rtol=1e-4, atol=1e-5)
    assert grads.keys() == rgrads.keys()
    for k in grads:
        np.testing.assert_allclose(grads[k], rgrads[k], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "layer, in_shape, out_shape, n_params",
    [
        (layers.DepthwiseConv2D(3), (8, 8, 4), (None, 6, 6, 4), 4 * 9 + 4),
        (layers.DepthwiseConv2D(3, 2, "same", 3, use_bias=False), (7, 7, 2), (None, 4, 4, 6), 6 * 9),
        (layers.SeparableConv2D(8, 3, padding="same"), (5, 5, 4), (None, 5, 5, 8), 36 + 32 + 8),
        (layers.ZeroPadding2D((1, 2)), (3, 3, 2), (None, 5, 7, 2), 0),
        (layers.Reshape((4, 4, 1)), (16,), (None, 4, 4, 1), 0),
        (layers.Rescaling(2.0), (3,), (None, 3), 0),
    ],
)
def test_shapes_and_parameter_counts(layer, in_shape, out_shape, n_params):
    m = models.Sequential([layer], backend="reference", dtype="float64")
    m.build(in_shape)
    assert layers.keras_shape(layer.output_shape) == out_shape
    assert layer.count_params() == n_params
    assert m.predict(np.zeros((2, *in_shape))).shape == (2, *out_shape[1:])


def test_depthwise_initializer_uses_keras_fans():
    # glorot_uniform's limit sqrt(6 / (fan_in + fan_out)), Keras's fans: R·S·C and R·S·depth_multiplier
    layer = layers.DepthwiseConv2D(3, depth_multiplier=2)
    models.Sequential([layer], backend="reference", dtype="float64", seed=0).build((40, 40, 16))
    limit = np.sqrt(6 / (9 * 16 + 9 * 2))
    w = layer.params["depthwise_kernel"]
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.9 * limit


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: layers.DepthwiseConv2D(3, depth_multiplier=0), "depth_multiplier"),
        (lambda: layers.DepthwiseConv2D(3, data_format="channels_middle"), "data_format"),
        (lambda: layers.SeparableConv2D(0, 3), "filters"),
        (lambda: layers.SeparableConv2D(4, 3, padding="full"), "padding"),
        (lambda: layers.ZeroPadding2D(-1), "padding"),
        (lambda: layers.ZeroPadding2D(((1, 2), (3,))), "padding"),
        (lambda: layers.Reshape((2, 3)), "target_shape"),
        (lambda: layers.Reshape((-1, -1, 2)), "target_shape"),
        (lambda: layers.Rescaling(float("nan")), "scale"),
    ],
)
def test_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_build_errors_name_the_layer():
    with pytest.raises(ValueError, match="cannot reshape"):
        models.Sequential([layers.Reshape((3, 3, 2))], backend="reference").build((4, 4, 1))
    with pytest.raises(ValueError, match="does not fit"):
        models.Sequential([layers.SeparableConv2D(2, 5)], backend="reference").build((3, 3, 1))


@pytest.mark.parametrize("make", LAYERS)
def test_config_round_trips_through_a_saved_file(make, tmp_path):
    m = models.Sequential([make()], backend="reference", dtype="float64", seed=0)
    m.build((9, 8, 4))
    m.save(tmp_path / "m.npz")
    back = models.load_model(tmp_path / "m.npz", backend="reference")
    assert back.layers[0].get_config() == m.layers[0].get_config()
    x = np.random.default_rng(6).standard_normal((2, 9, 8, 4))
    np.testing.assert_array_equal(back.predict(x), m.predict(x))


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("target_shape", [2, 3], "target_shape must be"),
        ("target_shape", [-1, -1, 4], "target_shape"),
        ("padding", [[1, 2], 3], "padding must be"),
        ("padding", -1, "padding must be"),
        ("padding", [[1, 1], [1, 1 << 21]], "padding must be"),
    ],
)
def test_a_bad_saved_config_is_refused_naming_the_layer(tmp_path, key, value, match):
    import json

    layer = layers.Reshape((-1,)) if key == "target_shape" else layers.ZeroPadding2D(1)
    m = models.Sequential([layer], backend="reference", dtype="float64")
    m.build((4, 4, 2))
    m.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as f:
        arrays = dict(f)
    cfg = json.loads(str(arrays["__architecture__"]))
    cfg["layers"][0]["config"][key] = value
    arrays["__architecture__"] = np.array(json.dumps(cfg))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=f"bad.npz: layer 0 \\({type(layer).__name__} .*{match}"):
        models.load_model(tmp_path / "bad.npz", backend="reference")
