"""The plan's inference path (cnnkern/plan_infer.py): weights prepared once (batch norm folded into the conv)
and calls compiled per input shape give exactly the predictions of the checked, unprepared path
(``Plan.fast_inference = False``), on every zoo model and at several batch sizes; the prepared weights are
rebuilt after every way weights change (set_weights, assign, load_weights, train_on_batch, fit, the
optimizer alone, a training forward, to_backend, weights_changed after an in-place write) and only then."""

import numpy as np
import pytest

import cnnkern as keras
from cnnkern import layers
from cnnkern.bench import zoo
from cnnkern.layers.base import weights_changed
from tests.conftest import load_backend


def _unprepared(model, x):
    """The prediction through the checked path, nothing prepared or compiled."""
    model._plan.fast_inference = False
    try:
        return model.predict(x, verbose=0)
    finally:
        model._plan.fast_inference = True


def small(backend="cpp"):
    m = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            layers.Conv2D(4, 3, padding="same", use_bias=False),
            layers.BatchNormalization(convention="torch"),
            layers.ReLU(),
            layers.Conv2D(6, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.DepthwiseConv2D(3, padding="same"),
            layers.BatchNormalization(),
            layers.Flatten(),
            layers.Dense(5, activation="softmax"),
        ],
        backend=backend,
        seed=3,
    )
    m.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
    m.build()
    rng = np.random.default_rng(0)
    for layer in m.layers:  # non-trivial batch-norm statistics
        for k in layer.state:
            layer.state[k] = layer._ctx.asarray(rng.uniform(0.5, 1.5, layer.state[k].shape))
    weights_changed()
    return m


def _data(n=4):
    rng = np.random.default_rng(1)
    return rng.random((n, 8, 8, 3), dtype=np.float32), rng.integers(0, 5, n)


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_zoo_predictions_equal_the_unprepared_path(name):
    load_backend("cpp")
    w = zoo.ZooInference(name, 1)
    model = w._cnnkern(keras.backends.resolve("cpp"))
    x3 = zoo.zoo_batch(name, 3)[0]
    for x in (w.images, x3, w.images):  # batch 1, another shape, batch 1 again (its compiled call)
        want = _unprepared(model, x)
        np.testing.assert_array_equal(model.predict_on_batch(x), want)
        np.testing.assert_array_equal(model(x), want)
    kinds = {s.kind for s in model._plan.steps if s.compiled}
    assert kinds, "no step took the compiled path"
    assert all(len(s.compiled) == 2 for s in model._plan.steps if s.compiled)  # batch 1 and batch 3


def test_predict_on_batch_never_hands_back_the_input():
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    for stack in ([layers.Flatten()], [layers.Dropout(0.5)]):
        m = keras.Sequential([keras.Input((6,)), *stack], backend="cpp")
        out = m.predict_on_batch(x)
        np.testing.assert_array_equal(out, m.predict(x, verbose=0))
        assert not np.may_share_memory(out, x)


@pytest.mark.parametrize("name", ["cpp", "numba", "reference"])
def test_compiled_pools_equal_the_unprepared_path(name):
    """Pools of their own (after an activation layer): 'same' padding with the ceil mode it implies, stride 2,
    overlapping windows, and an average pool that excludes the padding."""
    load_backend(name)
    m = keras.Sequential(
        [
            keras.Input((9, 11, 2)),
            layers.Conv2D(4, 3, padding="same", activation="relu"),
            layers.Activation("tanh"),
            layers.MaxPooling2D(3, strides=2, padding="same"),
            layers.AveragePooling2D(2, padding="same"),
            layers.Flatten(),
            layers.Dense(3, activation="softmax"),
        ],
        backend=name,
        seed=0,
    )
    m.build()
    x = np.random.default_rng(3).random((2, 9, 11, 2), dtype=np.float32)
    np.testing.assert_array_equal(m.predict_on_batch(x), _unprepared(m, x))
    pools = [
        s for s in m._plan.steps if isinstance(s.layers[0], (layers.MaxPooling2D, layers.AveragePooling2D))
    ]
    assert len(pools) == 2 and all(None not in s.compiled.values() for s in pools)


@pytest.mark.parametrize("name", ["cpp", "numba", "reference"])
def test_a_max_pool_runs_in_the_conv_step_before_it(name):
    """In inference a max pool that alone reads a conv step (its batch norm folded, its activation layer
    fused) runs in that step's conv2d_act_maxpool_forward: one channel (the register-pooled first layer),
    'same' pool padding with overlapping windows; the pool's own step then never runs."""
    load_backend(name)
    m = keras.Sequential(
        [
            keras.Input((20, 20, 1)),  # pooled rows of 8+: the cpp kernel pools in registers
            layers.Conv2D(4, 3, padding="same", use_bias=False),
            layers.BatchNormalization(convention="torch"),
            layers.ReLU(),
            layers.MaxPooling2D(2),
            layers.Conv2D(6, 3),
            layers.LeakyReLU(0.1),
            layers.MaxPooling2D(3, strides=2, padding="same"),
            layers.Flatten(),
            layers.Dense(3, activation="softmax"),
        ],
        backend=name,
        seed=1,
    )
    m.build()
    x = np.random.default_rng(4).random((3, 20, 20, 1), dtype=np.float32)
    np.testing.assert_array_equal(m.predict_on_batch(x), _unprepared(m, x))
    steps = m._plan.steps
    # the first pool joined its conv's step (the training kernels pool the batch norm's output); inference
    # compiles the step with the pool in its conv kernel all the same
    assert steps[0].kind == "conv_bn_act_pool" and steps[0].compiled
    convs = [s for s in steps if s.pool_after is not None]
    assert [s.kind for s in convs] == ["conv_act"]
    for s in convs:
        assert type(steps[s.pool_after].layers[0]) is layers.MaxPooling2D
        assert not steps[s.pool_after].compiled  # its output came from the conv step
        assert any(key[2] is not None for key in s.compiled)
    lines = []
    m.summary(print_fn=lines.append, plan=True)
    assert "infer with step 2's max pool: conv2d_act_maxpool_forward" in "\n".join(lines)


def test_a_conv_output_read_twice_keeps_its_own_pool_step():
    inp = keras.Input((8, 8, 2))
    c = layers.Conv2D(3, 3, padding="same", activation="relu")(inp)
    p = layers.MaxPooling2D()(c)
    g = layers.GlobalAveragePooling2D()(c)
    out = layers.Concatenate()([layers.Flatten()(p), g])
    m = keras.Model(inp, out, backend="cpp")
    m.build()
    assert all(s.pool_after is None for s in m._plan.steps)
    x = np.random.default_rng(5).random((2, 8, 8, 2), dtype=np.float32)
    np.testing.assert_array_equal(m.predict_on_batch(x), _unprepared(m, x))


def test_compiled_calls_are_bounded():
    from cnnkern import plan_infer

    m = small()
    rng = np.random.default_rng(4)
    for n in range(1, plan_infer._MAX_SHAPES + 6):
        x = rng.random((n, 8, 8, 3), dtype=np.float32)
        if n in (1, plan_infer._MAX_SHAPES + 5):
            np.testing.assert_array_equal(m.predict_on_batch(x), _unprepared(m, x))
        else:
            m.predict_on_batch(x)
    assert all(0 < len(s.compiled) <= plan_infer._MAX_SHAPES for s in m._plan.steps)


def test_folds_once_until_weights_change(monkeypatch):
    from cnnkern.compress import fold

    calls = []
    real = fold._folded
    monkeypatch.setattr(fold, "_folded", lambda *a: calls.append(1) or real(*a))
    m = small()
    x, _ = _data()
    for _ in range(4):
        m.predict(x, verbose=0)
    assert len(calls) == 2  # two conv + batch-norm steps, folded once each
    m.layers[1].set_weights(m.layers[1].get_weights())
    m.predict(x, verbose=0)
    assert len(calls) == 4


def _changes():
    """(name, change(model, x, y)): each changes the weights or running statistics by one route."""

    def set_weights(m, x, y):
        m.set_weights([w * 1.1 + 0.01 for w in m.get_weights()])

    def layer_set_weights(m, x, y):
        bn = m.layers[1]
        bn.set_weights([w * 1.5 + 0.25 for w in bn.get_weights()])

    def assign(m, x, y):
        v = m.layers[0].weights[0]
        v.assign(v.numpy() * -1.0)

    def load_weights(m, x, y):
        other = small()
        other.set_weights([w * 0.9 for w in m.get_weights()])
        path = load_weights.tmp / "w.npz"
        other.save_weights(path)
        m.load_weights(path)

    def train_on_batch(m, x, y):
        m.train_on_batch(x, y)

    def fit(m, x, y):
        m.fit(x, y, epochs=1, batch_size=2, verbose=0, shuffle=False)

    def optimizer_alone(m, x, y):
        conv = m.layers[3]
        grads = [((3, "kernel"), conv.params["kernel"], np.ones_like(conv.params["kernel"]))]
        m.optimizer.apply_gradients(grads, m._ctx)

    def training_forward(m, x, y):
        m(x, training=True)  # batch norm's running statistics move

    def in_place_then_weights_changed(m, x, y):
        m.layers[5].params["depthwise_kernel"][...] *= 2.0
        weights_changed()

    return [
        set_weights,
        layer_set_weights,
        assign,
        load_weights,
        train_on_batch,
        fit,
        optimizer_alone,
        training_forward,
        in_place_then_weights_changed,
    ]


@pytest.mark.parametrize("change", _changes(), ids=lambda f: f.__name__)
def test_prepared_weights_follow_every_change(change, tmp_path):
    change.tmp = tmp_path
    m = small()
    x, y = _data()
    before = m.predict(x, verbose=0)
    np.testing.assert_array_equal(before, _unprepared(m, x))
    change(m, x, y)
    after = m.predict(x, verbose=0)
    assert not np.array_equal(after, before), "the change did not change the predictions"
    np.testing.assert_array_equal(after, _unprepared(m, x))


def test_to_backend_follows():
    load_backend("numba")
    m = small("cpp")
    x, _ = _data()
    m.predict(x, verbose=0)
    m.to_backend("numba")
    np.testing.assert_array_equal(m.predict(x, verbose=0), _unprepared(m, x))
    assert m._plan.steps[0].prepared.sources[0] is m.layers[0].params["kernel"]  # the moved array


def test_an_empty_batch_and_a_channels_first_layer_take_the_checked_path():
    m = small()
    assert m.predict(np.zeros((0, 8, 8, 3), np.float32), verbose=0).shape == (0, 5)
    assert m.predict_on_batch(np.zeros((0, 8, 8, 3), np.float32)).shape == (0, 5)
    cf = keras.Sequential(
        [
            keras.Input((2, 6, 6)),  # read as (C, H, W) by the channels_first conv
            layers.Conv2D(3, 3, data_format="channels_first"),
            layers.Conv2D(4, 1, activation="relu"),  # reads the channels_first layer's transposed view
            layers.Flatten(),
            layers.Dense(3, activation="softmax"),
        ],
        backend="cpp",
        seed=0,
    )
    cf.build()
    x = np.random.default_rng(2).random((2, 2, 6, 6), dtype=np.float32)
    np.testing.assert_array_equal(cf.predict(x, verbose=0), _unprepared(cf, x))
    assert list(cf._plan.steps[0].compiled.values()) == [None]  # channels_first: no compiled call
