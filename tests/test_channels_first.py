"""data_format='channels_first' (Conv2D, DepthwiseConv2D, SeparableConv2D, the pooling layers, ZeroPadding2D)
and BatchNormalization(axis=1), with Keras's meaning: a model of channels_first layers fed (N, C, H, W)
images computes what the channels_last model computes on the transposed images (losses, gradients, on every
backend); a channels_first layer in a channels_last model reads the tensor it is given as (N, C, H, W), never
fused with its neighbours (checked against a PyTorch twin)."""

import numpy as np
import pytest

from cnnkern import layers, models, optimizers

CF = "channels_first"


def net(data_format, backend="reference", dtype="float64", seed=0):
    f = data_format
    shape = (3, 10, 9) if f == CF else (10, 9, 3)
    m = models.Sequential(
        [
            layers.ZeroPadding2D(((1, 0), (0, 1)), data_format=f, input_shape=shape),
            layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", data_format=f),
            layers.MaxPooling2D(2, strides=1, data_format=f),
            layers.BatchNormalization(axis=1 if f == CF else -1),
            layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, data_format=f),
            layers.MaxPooling2D(2, padding="same", data_format=f),
            layers.SeparableConv2D(5, 2, activation="tanh", data_format=f),
            layers.AveragePooling2D((2, 1), data_format=f),  # to 1x1: Flatten's order cannot differ
            layers.Flatten(),
            layers.Dense(4, activation="softmax"),
        ],
        backend=backend,
        dtype=dtype,
        seed=seed,
    )
    m.compile(optimizer=optimizers.SGD(learning_rate=0.1, momentum=0.9))
    return m


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((6, 10, 9, 3)), rng.integers(0, 4, 6)


def steps(m, x, y, n=4):
    return np.array([m.train_on_batch(x, y) for _ in range(n)])


def test_summary_shapes_are_in_the_layers_order():
    m = net(CF)
    m.build()
    shapes = [layers.keras_shape(l.output_shape) for l in m.layers]
    assert shapes[:3] == [(None, 3, 11, 10), (None, 6, 6, 5), (None, 6, 5, 4)]
    assert shapes[7] == (None, 5, 1, 1)
    assert m.predict(data()[0].transpose(0, 3, 1, 2)).shape == (6, 4)
    # never fused with a neighbour: the plan runs no channels_first layer in a pair, nor a pool's backward
    # through a channels_first activation
    for step in m._plan.steps:
        if len(step.layers) > 1 or step.act_from is not None:
            assert all(l.data_format == "channels_last" for l in step.layers)
            assert getattr(step.act_from, "data_format", "channels_last") == "channels_last"


def test_channels_first_model_equals_the_channels_last_one(plain_target):
    """Same weights, transposed images: the same losses and weights after training, on every backend (float32
    against the float64 reference of the channels_last model)."""
    x, y = data()
    ref = net("channels_last")
    want = steps(ref, x, y)
    cf = net(CF)
    cf.set_weights(net("channels_last").get_weights())
    np.testing.assert_allclose(steps(cf, x.transpose(0, 3, 1, 2), y), want, rtol=1e-12)
    for a, b in zip(cf.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    m = net(CF, plain_target.backend, "float32")
    m.set_weights(net("channels_last").get_weights())
    got = steps(m, x.transpose(0, 3, 1, 2).astype(np.float32), y)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_channels_first_pool_in_a_channels_last_model_matches_pytorch():
    """Conv2D (channels_last, relu) then MaxPooling2D(channels_first): the pool reads Keras's (N, H, W, C)
    view of the conv output as (N, C, H, W), so it pools over W and C; the pair is not fused and the pool
    does not take the conv's activation gradient."""
    torch = pytest.importorskip("torch", reason="PyTorch not installed: pip install 'cnnkern[torch]'")
    F = torch.nn.functional
    conv, pool = layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(2, data_format=CF)
    m = models.Sequential(
        [conv, pool, layers.Flatten(), layers.Dense(3, activation="softmax")],
        backend="reference",
        dtype="float64",
        seed=1,
    )
    m.build((7, 6, 2))
    m.compile(optimizer=optimizers.SGD(learning_rate=0.1))
    # the plan runs each alone: no fused pair, no activation gradient taken by the pool
    assert [len(step.layers) for step in m._plan.steps][:2] == [1, 1]
    assert all(step.act_from is None for step in m._plan.steps)
    assert layers.keras_shape(pool.output_shape) == (None, 5, 2, 2)
    p = [torch.tensor(w, requires_grad=True) for w in m.get_weights()]
    x, y = data(2)
    x, y = x[:, :7, :6, :2], y % 3
    want = []
    for _ in range(3):
        z = torch.relu(F.conv2d(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), p[0], p[1]))
        # Keras's view of z is z.permute(0, 2, 3, 1); read as NCHW, pooled, and given back (0, 3, 1, 2)
        a = F.max_pool2d(z.permute(0, 2, 3, 1), 2).permute(0, 3, 1, 2)
        loss = F.cross_entropy(F.linear(a.reshape(len(x), -1), p[2], p[3]), torch.from_numpy(y))
        loss.backward()
        with torch.no_grad():
            for t in p:
                t -= 0.1 * t.grad
                t.grad = None
        want.append(loss.item())
    np.testing.assert_allclose(steps(m, x, y, 3), want, rtol=1e-12)


def test_channels_first_configs_round_trip(tmp_path):
    m = net(CF)
    m.save(tmp_path / "cf.npz")
    back = models.load_model(tmp_path / "cf.npz", backend="reference")
    assert [l.get_config() for l in back.layers] == [l.get_config() for l in m.layers]
    x = data()[0].transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(back.predict(x), m.predict(x))
    assert back.layers[3].axis == 1 and back.layers[1].data_format == CF
