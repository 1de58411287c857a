"""The plan's fused groups (cnnkern/plan_fusions.py): batch norm + activation (+ max pool), Add +
activation, and batch norm folded into the conv for inference. Fused and unfused plans of the same model give
the same losses, gradients and predictions (float64 reference: ~1e-12; the fast backends in float32), for a
Sequential stack and the ResNet-style functional model; fusion is skipped where another layer also reads the
intermediate output, where a layer is channels_first, or where the activation has no fused kernel; the folded
inference never goes stale; and the fused float64 ResNet's predictions match its PyTorch twin in eval."""

import numpy as np
import pytest

import cnnkern as keras
from cnnkern import layers
from cnnkern.plan import Plan
from tests.conftest import load_backend
from tests.test_graph_models import TorchTwin, _data, _match_torch, resnet

OFF = dict(bn_act=False, add_act=False, fold_bn=False, conv_act=False, bn_pool=False)


def _replan(model, **flags):
    """Give a built model the plan with the fusions ``flags`` (all on when empty)."""
    if isinstance(model, keras.Sequential):
        model._plan = model._chain_plan(**flags)
    else:
        g = model._graph
        model._plan = Plan(g.layers, g.inputs_of, g.merge, **flags)


def _kinds(model):
    return [s.kind for s in model._plan.steps]


def stack(**kw):
    return keras.Sequential(
        [
            keras.Input((9, 9, 2)),
            layers.Conv2D(4, 3, use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.DepthwiseConv2D(3, padding="same"),
            layers.BatchNormalization(convention="torch"),
            layers.MaxPooling2D(),
            layers.Conv2D(5, 1, activation="relu"),  # an activation before the batch norm: not folded
            layers.BatchNormalization(),
            layers.LeakyReLU(0.2),
            layers.Flatten(),
            layers.Dense(6),
            layers.BatchNormalization(),  # on flat input
            layers.Activation("tanh"),
            layers.Dense(3, activation="softmax"),
        ],
        **kw,
    )


def _pair(build, backend, dtype):
    """The same model twice (same weights): fused plan, unfused plan."""
    models = []
    for flags in ({}, OFF):
        m = build(backend=backend, dtype=dtype, seed=4)
        m.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9))
        m.build()
        _replan(m, **flags)
        models.append(m)
    models[1].set_weights(models[0].get_weights())
    return models


def _compare(build, shape, backend, dtype, tol):
    fused, plain = _pair(build, backend, dtype)
    x, y = _data(n=6, shape=shape, classes=3 if build in (stack, bn_pool_stack) else 5)
    x = x.astype(dtype)
    for _ in range(3):
        a, b = fused.train_on_batch(x, y), plain.train_on_batch(x, y)
        np.testing.assert_allclose(a, b, **tol)
    np.testing.assert_allclose(fused.predict(x, verbose=0), plain.predict(x, verbose=0), **tol)
    for a, b in zip(fused.get_weights(), plain.get_weights()):  # gradients equal: weights stay equal
        np.testing.assert_allclose(a, b, **tol)
    return fused


F64 = dict(rtol=1e-11, atol=1e-12)
F32 = dict(rtol=2e-4, atol=2e-5)


def test_stack_fused_equals_unfused_in_float64():
    fused = _compare(stack, (9, 9, 2), "reference", "float64", F64)
    assert _kinds(fused) == [
        "conv_bn_act",  # conv + bn + relu: one folded conv in inference
        "conv_bn",  # depthwise conv + bn
        "layer",  # the pool (applies no activation: the batch norm has none)
        "layer",
        "bn_act",
        "layer",
        "layer",
        "bn_act",  # batch norm on flat input + tanh
        "layer",
    ]


def test_resnet_fused_equals_unfused_in_float64():
    fused = _compare(resnet, (12, 12, 1), "reference", "float64", F64)
    kinds = _kinds(fused)
    assert kinds.count("add_act") == 6 and kinds.count("conv_bn_act") == 7 and kinds.count("conv_bn") == 8


@pytest.mark.parametrize("name", ["cpp", "numba"])
@pytest.mark.parametrize("build", [stack, resnet], ids=["stack", "resnet"])
def test_fused_equals_unfused_on_the_fast_backends(name, build):
    load_backend(name)
    shape = (9, 9, 2) if build is stack else (12, 12, 1)
    _compare(build, shape, name, "float32", F32)


def bn_pool_stack(**kw):
    """Batch norm + activation + max pool groups: after a conv whose batch norm folds in inference (2x2
    pool, Keras's batch-norm convention), and after a conv with its own activation (leaky ReLU, 'same' 3x3
    pool with overlapping windows, PyTorch's convention)."""
    return keras.Sequential(
        [
            keras.Input((10, 10, 2)),
            layers.Conv2D(4, 3, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.MaxPooling2D(),
            layers.Conv2D(5, 3, padding="same", activation="relu"),
            layers.BatchNormalization(convention="torch"),
            layers.LeakyReLU(0.2),
            layers.MaxPooling2D(3, strides=2, padding="same"),
            layers.Flatten(),
            layers.Dense(3, activation="softmax"),
        ],
        **kw,
    )


@pytest.mark.parametrize("name", ["reference", "cpp", "numba"])
def test_bn_act_pool_fused_equals_unfused(name):
    load_backend(name)
    dtype, tol = ("float64", F64) if name == "reference" else ("float32", F32)
    fused = _compare(bn_pool_stack, (10, 10, 2), name, dtype, tol)
    assert _kinds(fused) == ["conv_bn_act_pool", "layer", "bn_act_pool", "layer", "layer"]
    _, plain = _pair(bn_pool_stack, name, dtype)
    assert "conv_bn_act_pool" not in _kinds(plain)
    lines = []
    fused.summary(print_fn=lines.append, plan=True)
    assert "batchnorm2d_act_maxpool_forward" in "\n".join(lines)


def test_bn_act_pool_needs_the_pool_to_be_the_only_reader():
    """A second reader of the activation keeps the pool a step of its own (the activation is stored)."""
    inp = keras.Input((8, 8, 2))
    z = layers.BatchNormalization()(layers.Conv2D(3, 3, padding="same")(inp))
    a = layers.ReLU()(z)
    pooled = [layers.Flatten()(layers.MaxPooling2D()(a)), layers.Flatten()(layers.AveragePooling2D()(a))]
    out = layers.Add()(pooled)
    m = keras.Model(inp, layers.Dense(2, activation="softmax")(out))
    m.build()
    assert "conv_bn_act_pool" not in _kinds(m) and "conv_bn_act" in _kinds(m)


def conv_act_stack(**kw):
    """Convs without activation followed by activation layers (conv_act), one of them before a max pool
    that takes its gradient."""
    return keras.Sequential(
        [
            keras.Input((9, 9, 2)),
            layers.Conv2D(4, 3, padding="same"),
            layers.LeakyReLU(0.2),
            layers.MaxPooling2D(),
            layers.Conv2D(5, 3, strides=2, padding="same"),
            layers.Activation("sigmoid"),
            layers.DepthwiseConv2D(1),
            layers.ReLU(),
            layers.Flatten(),
            layers.Dense(5, activation="softmax"),
        ],
        **kw,
    )


@pytest.mark.parametrize("name", ["reference", "cpp"])
def test_conv_act_fused_equals_unfused(name):
    load_backend(name)
    dtype, tol = ("float64", F64) if name == "reference" else ("float32", F32)
    fused = _compare(conv_act_stack, (9, 9, 2), name, dtype, tol)
    assert _kinds(fused) == ["conv_act", "layer", "conv_act", "conv_act", "layer", "layer"]
    assert fused._plan.steps[1].act_from is fused.layers[1]  # the pool applies the leaky ReLU's gradient


def test_gradients_of_fused_and_unfused_plans_are_equal():
    fused, plain = _pair(resnet, "reference", "float64")
    x, y = _data()
    grads = []
    for m in (fused, plain):
        m._gradients(m._to_internal(x), m._labels(y, len(y)))
        grads.append([np.array(g) for layer in m.layers for g in layer.grads.values()])
    assert len(grads[0]) == len(grads[1]) > 30
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, **F64)


def test_resnet_predictions_match_the_torch_twin_in_eval(torch):
    """After 3 training steps (fused: batch norm + relu, add + relu) the folded inference equals PyTorch's
    eval-mode network on the same weights and running statistics."""
    model = resnet(backend="reference", dtype="float64", seed=0)
    x, y = _data()
    ours, theirs = _match_torch(torch, model, x, y, steps=3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)
    twin = TorchTwin(model, torch)  # the trained weights and running statistics
    twin.eval = True
    with torch.no_grad():
        want = torch.softmax(twin.logits(x), dim=1).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-10, atol=1e-12)


def test_folded_inference_follows_set_weights_and_training():
    fused, plain = _pair(stack, "reference", "float64")
    x, y = _data(n=6, shape=(9, 9, 2), classes=3)
    before = fused.predict(x, verbose=0)
    bn = fused.layers[1]
    bn.set_weights([w * 1.5 + 0.25 for w in bn.get_weights()])  # gamma, beta, moving stats
    plain.set_weights(fused.get_weights())
    after = fused.predict(x, verbose=0)
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, plain.predict(x, verbose=0), **F64)
    fused.train_on_batch(x, y), plain.train_on_batch(x, y)
    np.testing.assert_allclose(fused.predict(x, verbose=0), plain.predict(x, verbose=0), **F64)
    np.testing.assert_allclose(fused.evaluate(x, y, verbose=0), plain.evaluate(x, y, verbose=0), **F64)


def test_no_fusion_where_another_layer_reads_the_intermediate():
    conv, bn, relu, add, add_relu = (
        layers.Conv2D(3, 3, padding="same"),
        layers.BatchNormalization(),
        layers.Activation("relu"),
        layers.Add(),
        layers.ReLU(),
    )
    shared_add, elu_add, elu = layers.Add(), layers.Add(), layers.Activation("elu")
    inputs = keras.Input((6, 6, 2))
    c = conv(inputs)
    b = bn(c)
    side = layers.Conv2D(3, 1)(c)  # reads the conv too: no folding
    r = add_relu(add([relu(b), b, side]))  # the Add reads the batch norm too: no batch norm + relu
    p = shared_add([r, side])
    m = layers.Add()([layers.ReLU()(p), p])  # p read by the ReLU and by this Add: no Add + ReLU
    w = elu(elu_add([m, m]))  # elu: no fused kernel
    outputs = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(w))
    model = keras.Model(inputs, outputs, backend="reference", dtype="float64", seed=1)
    model.build()
    kind = {layer: s.kind for s in model._plan.steps for layer in s.layers}
    assert kind[conv] == kind[bn] == kind[relu] == kind[shared_add] == kind[elu_add] == kind[elu] == "layer"
    assert kind[add] == kind[add_relu] == "add_act"
    x, _ = _data(n=4, shape=(6, 6, 2), classes=3)
    want = model.predict(x, verbose=0)
    _replan(model, **OFF)
    assert set(_kinds(model)) == {"layer"}
    np.testing.assert_allclose(model.predict(x, verbose=0), want, **F64)


def test_no_fusion_across_layouts():
    cf = "channels_first"
    model = keras.Sequential(
        [
            keras.Input((5, 7, 7)),  # read as (C, H, W) = (5, 7, 7) by the first conv
            layers.Conv2D(3, 3, data_format=cf),
            layers.BatchNormalization(axis=1),
            layers.ReLU(),
            layers.Conv2D(3, 3),
            layers.BatchNormalization(axis=1),  # channels_first after a channels_last conv
            layers.Activation("relu"),
            layers.Flatten(),
            layers.Dense(2, activation="softmax"),
        ],
        backend="reference",
    )
    model.build()
    assert set(_kinds(model)) == {"layer"}


def test_summary_shows_the_groups_and_their_kernels():
    model = resnet(backend="reference", seed=0)
    model.build()
    lines = []
    model.summary(print_fn=lines.append, plan=True)
    text = "\n".join(lines)
    assert "batch_normalization (BatchNormalization) + activation (Activation)" in text
    assert "batchnorm2d_act_forward" in text and "bn folded" in text
    assert "array + (no add kernel), activation_forward" in text
    _replan(model, **OFF)
    lines = []
    model.summary(print_fn=lines.append, plan=True)
    assert "batchnorm2d_act_forward" not in "\n".join(lines) and "bn folded" not in "\n".join(lines)


def test_unknown_fusion_is_refused():
    model = stack(backend="reference")
    model.build()
    with pytest.raises(TypeError, match="unknown fusions.*fold_conv"):
        model._chain_plan(fold_conv=False)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch not installed: pip install 'cnnkern[torch]'")
