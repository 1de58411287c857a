"""Functional models (cnnkern.Model on cnnkern.Input tensors): a ResNet-style network written as in Keras
matches a PyTorch twin with the same weights, trains on the fast backends, saves and loads; merge layers and
global pooling against PyTorch; the errors of what is not supported."""

import numpy as np
import pytest

import cnnkern as keras  # the one line that differs from a Keras script
from cnnkern import layers
from cnnkern.layers.base import Layer
from cnnkern.shapes import same_padding
from tests.conftest import load_backend


def residual_block(x, filters, stride):
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    y = layers.BatchNormalization()(y)
    y = layers.Activation("relu")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    if stride != 1:  # projection shortcut
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(x)
        shortcut = layers.BatchNormalization()(shortcut)
    y = layers.Add()([y, shortcut])
    return layers.Activation("relu")(y)


def resnet(input_shape=(12, 12, 1), classes=5, **model_kwargs):
    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    for filters, stride in ((4, 1), (8, 2), (16, 2)):
        x = residual_block(x, filters, stride)
        x = residual_block(x, filters, 1)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, **model_kwargs)


def _data(n=8, shape=(12, 12, 1), classes=5, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)), rng.integers(0, classes, n)


class TorchTwin:
    """The PyTorch functions of a built cnnkern functional model, layer by layer over its graph, on copies of
    its weights: TensorFlow's 'same' padding (the extra row / column at the bottom / right) as an explicit
    pad, batch norm with the layer's epsilon and momentum (in PyTorch's sense)."""

    def __init__(self, model, torch):
        self.torch, self.F = torch, torch.nn.functional
        self.model, self.graph = model, model._graph
        self.eval = False  # batch norm on the running statistics (inference) when set
        self.params = {}
        self.state = {}
        for layer in model.layers:
            for k, a in layer.params.items():
                self.params[layer.name, k] = torch.tensor(np.array(a), requires_grad=True)
            for k, a in layer.state.items():
                self.state[layer.name, k] = torch.tensor(np.array(a))

    def _layer(self, layer, x):
        F, p = self.F, lambda k: self.params.get((layer.name, k))
        kind = type(layer).__name__
        if kind == "Conv2D":
            if layer.padding == "same":
                pads = [
                    same_padding(n, k, s, 1) for n, k, s in zip(x.shape[2:], layer.kernel_size, layer.strides)
                ]
                x = F.pad(x, (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
            x = F.conv2d(x, p("kernel"), p("bias"), stride=layer.strides)
            return x if layer.activation == "linear" else F.relu(x)
        if kind == "BatchNormalization":
            momentum = layer.momentum if layer.convention == "torch" else 1.0 - layer.momentum
            rm, rv = self.state[layer.name, "moving_mean"], self.state[layer.name, "moving_variance"]
            train = not self.eval
            return F.batch_norm(x, rm, rv, p("gamma"), p("beta"), train, momentum, layer.epsilon)
        if kind == "Activation":
            assert layer.activation == "relu"
            return F.relu(x)
        if kind == "Add":
            return sum(x[1:], x[0])
        if kind == "MaxPooling2D":
            assert layer.padding == "valid"
            return F.max_pool2d(x, layer.pool_size, layer.strides)
        if kind == "Concatenate":
            return self.torch.cat(x, dim=1)
        if kind == "GlobalAveragePooling2D":
            return x.mean(dim=(2, 3))
        if kind == "GlobalMaxPooling2D":
            return x.amax(dim=(2, 3))
        if kind == "Dense":  # softmax left to cross_entropy
            return F.linear(x, p("kernel"), p("bias"))
        raise AssertionError(f"no twin for {kind}")

    def logits(self, x):
        vals = [self.torch.tensor(x.transpose(0, 3, 1, 2).copy())]
        for i, layer in enumerate(self.model.layers[1:], 1):
            ins = [vals[j] for j in self.graph.inputs_of[i]]
            vals.append(self._layer(layer, ins if self.graph.merge[i] else ins[0]))
        return vals[-1]

    def loss(self, x, y):
        return self.F.cross_entropy(self.logits(x), self.torch.tensor(y))


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch not installed: pip install 'cnnkern[torch]'")


def _match_torch(torch, model, x, y, steps=5, lr=0.1, momentum=0.9):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=momentum))
    model.build()
    twin = TorchTwin(model, torch)
    opt = torch.optim.SGD(list(twin.params.values()), lr=lr, momentum=momentum)
    ours, theirs = [], []
    for _ in range(steps):
        ours.append(model.train_on_batch(x, y))
        opt.zero_grad()
        loss = twin.loss(x, y)
        loss.backward()
        opt.step()
        theirs.append(loss.item())
    return np.array(ours), np.array(theirs)


def test_resnet_losses_match_a_torch_twin_in_float64(torch):
    model = resnet(backend="reference", dtype="float64", seed=0)
    names = [type(l).__name__ for l in model.layers]
    assert names.count("Add") == 6 and names.count("Conv2D") == 1 + 6 * 2 + 2  # stem, blocks, projections
    x, y = _data()
    ours, theirs = _match_torch(torch, model, x, y)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)
    assert ours[-1] < ours[0]  # and it learns the batch


def test_concatenate_global_max_and_fan_out_match_torch(torch):
    inputs = keras.Input((6, 6, 2))
    a = layers.Conv2D(3, 3, padding="same", activation="relu")(inputs)
    b = layers.Conv2D(2, 1)(inputs)  # the input feeds two layers
    c = layers.Concatenate()([a, b, a])  # `a` used twice by one layer and once more below
    d = layers.Add()([c, layers.Conv2D(8, 3, padding="same")(a)])
    outputs = layers.Dense(4, activation="softmax")(layers.GlobalMaxPooling2D()(d))
    model = keras.Model(inputs, outputs, backend="reference", dtype="float64", seed=3)
    x, y = _data(n=6, shape=(6, 6, 2), classes=4)
    ours, theirs = _match_torch(torch, model, x, y, steps=3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


def test_conv_pool_fuse_only_where_the_pool_alone_reads_the_conv(torch):
    inputs = keras.Input((8, 8, 2))
    fused_conv = layers.Conv2D(3, 3, padding="same", activation="relu")
    fused_pool = layers.MaxPooling2D()
    p1 = fused_pool(fused_conv(inputs))
    shared = layers.Conv2D(3, 1, activation="relu")(inputs)  # read by a pool and by a strided conv
    lone_pool = layers.MaxPooling2D()
    p2 = lone_pool(shared)
    s = layers.Conv2D(3, 2, strides=2)(shared)
    x = layers.Add()([p1, p2, s])
    outputs = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs, backend="reference", dtype="float64", seed=5)
    x, y = _data(n=4, shape=(8, 8, 2), classes=3)
    ours, theirs = _match_torch(torch, model, x, y, steps=3)
    steps = {s.layers: s for s in model._plan.steps}
    assert (fused_conv, fused_pool) in steps and steps[lone_pool,].act_from is None
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["cpp", "numba", "cuda"])
def test_resnet_trains_on_the_fast_backends(name):
    load_backend(name)
    model = resnet(backend=name, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9))
    x, y = _data(n=16)
    losses = [model.train_on_batch(x, y) for _ in range(6)]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses


def test_resnet_float32_cpp_matches_reference():
    """The fast backend's forward agrees with the reference on the same weights (to float32 rounding)."""
    load_backend("cpp")
    x, _ = _data(n=4)
    ref = resnet(backend="reference", dtype="float32", seed=0)
    fast = resnet(backend="cpp", seed=0)
    ref.build(), fast.build()
    fast.set_weights(ref.get_weights())
    np.testing.assert_allclose(fast.predict(x), ref.predict(x), rtol=1e-4, atol=1e-5)


def test_save_and_load_round_trip_a_functional_model(tmp_path):
    model = resnet(backend="reference", dtype="float64", seed=0)
    model.compile(optimizer="sgd", metrics=["accuracy"])
    x, y = _data()
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    path = tmp_path / "resnet.npz"
    model.save(path)
    loaded = keras.models.load_model(path, backend="reference")
    assert type(loaded) is keras.Model and loaded.compiled
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.get_config() == model.get_config()


def test_a_broken_functional_file_is_refused(tmp_path):
    import json

    model = resnet(backend="reference", seed=0)
    cfg = model.get_config()
    cfg["layers"][5]["inbound"] = ["no_such_layer"]
    arrays = {"__architecture__": np.array(json.dumps(cfg))}
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"bad\.npz: layer 5 .*inbound must be"):
        keras.models.load_model(path)


def test_sequential_takes_an_input_first():
    model = keras.Sequential(
        [keras.Input(shape=(4, 4, 1)), layers.Flatten(), layers.Dense(2, activation="softmax")]
    )
    assert model.input_shape == (4, 4, 1) and len(model.layers) == 2
    model.compile()
    assert model.predict(np.zeros((3, 4, 4, 1))).shape == (3, 2)
    assert model.get_config()["format"] == "cnnkern-sequential"  # files of Sequential models are unchanged
    assert isinstance(model, keras.Model) and keras.layers.Input is keras.Input


def test_a_functional_chain_is_the_sequential_model():
    """The same layers as a chain of calls and as a Sequential: the same plan, the same losses bit for bit."""

    def stack():
        return [
            layers.Conv2D(4, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Activation("tanh"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(3, activation="softmax"),
        ]

    seq = keras.Sequential([keras.Input((10, 10, 1)), *stack()], backend="reference", seed=2)
    x = inputs = keras.Input((10, 10, 1))
    for layer in stack():
        x = layer(x)
    fun = keras.Model(inputs, x, backend="reference", seed=2)
    seq.build(), fun.build()
    fun.set_weights(seq.get_weights())
    kinds = [[type(l).__name__ for l in s.layers] for s in seq._plan.steps]
    assert kinds == [["Conv2D", "MaxPooling2D"], ["Activation"], ["MaxPooling2D"], ["Flatten"], ["Dense"]]
    assert [[type(l).__name__ for l in s.layers] for s in fun._plan.steps[1:]] == kinds
    assert seq._plan.steps[2].act_from is seq.layers[2] and fun._plan.steps[3].act_from is fun.layers[3]
    xs, ys = _data(n=6, shape=(10, 10, 1), classes=3)
    for model in (seq, fun):
        model.compile(optimizer="adam")
    for _ in range(3):
        assert seq.train_on_batch(xs, ys) == fun.train_on_batch(xs, ys)
    lines = []
    seq.summary(print_fn=lines.append, plan=True)
    assert (
        "conv2d_act_maxpool_forward" in lines[0] and "maxpool2d_act_backward (with activation's" in lines[0]
    )


def test_summary_names_the_connections():
    model = resnet(backend="reference", seed=0)
    lines = []
    model.summary(print_fn=lines.append)
    text = lines[0]
    assert "Connected to" in text and "add (Add)" in text
    assert "batch_normalization_2, activation" in text  # the first block's Add: its branch and its shortcut


def test_what_is_not_supported_says_so():
    a, b = keras.Input((4,)), keras.Input((4,))
    with pytest.raises(ValueError, match="multi-input / multi-output models are not supported"):
        keras.Model([a, b], layers.Add()([a, b]))
    dense = layers.Dense(2)
    dense(a)
    with pytest.raises(ValueError, match="shared layers .* are not supported"):
        dense(b)
    with pytest.raises(ValueError, match="not among the model's inputs"):
        keras.Model(a, layers.Dense(2)(b))
    with pytest.raises(ValueError, match="only the channel axis"):
        layers.Concatenate(axis=1)([keras.Input((4, 4, 2)), keras.Input((4, 4, 2))])
    with pytest.raises(ValueError, match=r"same shape, got \(None, 4\), \(None, 3\)"):
        layers.Add()([a, keras.Input((3,))])
    with pytest.raises(TypeError, match="takes a list of two or more tensors"):
        layers.Add()(a)
    model = keras.Model(a, layers.Dense(2)(a))
    with pytest.raises(ValueError, match=f"already belongs to model {model.name!r}: models sharing layers"):
        keras.Model(a, layers.Dense(3)(a))  # `a` is that model's input
    with pytest.raises(TypeError, match="model.predict"):
        layers.Dense(2)(np.zeros((1, 4)))
    assert isinstance(dense, Layer)


# The architecture entry of a Sequential file as cnnkern wrote it before functional models existed.
_OLD_SEQUENTIAL = {
    "format": "cnnkern-sequential",
    "version": 1,
    "name": "sequential",
    "dtype": "float32",
    "input_shape": [5, 5, 1],
    "layers": [
        {
            "class_name": "Conv2D",
            "config": {
                "name": "conv2d",
                "trainable": True,
                "input_shape": [5, 5, 1],
                "filters": 2,
                "kernel_size": [3, 3],
                "strides": [1, 1],
                "padding": "valid",
                "dilation_rate": [1, 1],
                "groups": 1,
                "use_bias": True,
                "kernel_initializer": "glorot_uniform",
                "bias_initializer": "zeros",
                "activation": "relu",
            },
        },
        {
            "class_name": "MaxPooling2D",
            "config": {"name": "max_pooling2d", "trainable": True, "pool_size": [2, 2], "strides": [2, 2]},
        },
        {"class_name": "Flatten", "config": {"name": "flatten", "trainable": True}},
        {
            "class_name": "Dense",
            "config": {"name": "dense", "trainable": True, "units": 2, "activation": "softmax"},
        },
    ],
    "compile": None,
}


def test_a_sequential_file_written_before_functional_models_still_loads(tmp_path):
    import json

    rng = np.random.default_rng(0)
    w = {
        "000.conv2d/kernel": rng.standard_normal((2, 1, 3, 3)).astype(np.float32),
        "000.conv2d/bias": rng.standard_normal(2).astype(np.float32),
        "003.dense/kernel": rng.standard_normal((2, 2)).astype(np.float32),
        "003.dense/bias": rng.standard_normal(2).astype(np.float32),
    }
    path = tmp_path / "old.npz"
    np.savez(path, __architecture__=np.array(json.dumps(_OLD_SEQUENTIAL)), **w)
    model = keras.models.load_model(path, backend="reference")
    assert type(model) is keras.Sequential and [l.name for l in model.layers][-1] == "dense"
    x = rng.standard_normal((3, 5, 5, 1)).astype(np.float32)
    # the same network by hand: conv + relu, 2x2 max pool (of a 3x3 map: one window), dense, softmax
    patches = np.lib.stride_tricks.sliding_window_view(x[..., 0], (3, 3), axis=(1, 2))
    z = np.maximum(
        np.einsum("nhwrs,krs->nkhw", patches, w["000.conv2d/kernel"][:, 0])
        + w["000.conv2d/bias"][:, None, None],
        0,
    )
    logits = z[:, :, :2, :2].max(axis=(2, 3)) @ w["003.dense/kernel"].T + w["003.dense/bias"]
    want = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(model.predict(x), want / want.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
