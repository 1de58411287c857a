"""A MobileNet-style Sequential model (issue 14): a strided stem conv, depthwise-separable blocks (depthwise
3x3, batch norm, ReLU, pointwise 1x1, batch norm, ReLU; the stride-2 one after ZeroPadding2D, as Keras's
MobileNet), a SeparableConv2D, and MobileNet's head (pooling to 1x1, 1x1 conv to the classes, Reshape,
softmax). In float64 on the reference backend its losses over 5 Adam steps match a hand-written PyTorch twin
with the same weights (Keras's batch norm: epsilon 1e-3, momentum 0.99 on the old value, biased running
variance; TensorFlow's uneven 'same' padding at stride 2) to 1e-9, and so do the running statistics; on
the cpp and numba backends (float32) it trains with the loss falling, following the reference."""

import numpy as np
import pytest

from cnnkern import layers, models, optimizers

from .conftest import load_backend

LR = 0.01
STEPS = 5


def mobilenet(backend="reference", dtype="float64", seed=0):
    def block(filters, strides):
        pad = [layers.ZeroPadding2D(((0, 1), (0, 1)))] if strides == 2 else []
        return pad + [
            layers.DepthwiseConv2D(
                3, strides=strides, padding="same" if strides == 1 else "valid", use_bias=False
            ),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.Conv2D(filters, 1, use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
        ]

    m = models.Sequential(
        [
            layers.Rescaling(0.5, offset=-0.25, input_shape=(16, 16, 3)),
            layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            *block(16, 1),
            *block(24, 2),
            layers.SeparableConv2D(24, 3, padding="same", depth_multiplier=2, activation="relu"),
            layers.AveragePooling2D(4),
            layers.Conv2D(10, 1, kernel_initializer="he_uniform"),
            layers.Reshape((10,)),
            layers.Activation("softmax"),
        ],
        backend=backend,
        dtype=dtype,
        seed=seed,
    )
    m.compile(optimizer=optimizers.Adam(learning_rate=LR), metrics=["accuracy"])
    return m


def batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 2, (n, 16, 16, 3)), rng.integers(0, 10, n)


def losses(model, x, y, steps=STEPS):
    return np.array([model.train_on_batch(x, y)[0] for _ in range(steps)])


def torch_twin(model):
    """The same network in PyTorch, float64, from the model's weights: (step function, parameter dict,
    running statistics dict)."""
    torch = pytest.importorskip("torch", reason="PyTorch not installed: pip install 'cnnkern[torch]'")
    F = torch.nn.functional
    p = {v.path: torch.tensor(v.numpy(), requires_grad=v.trainable) for v in model.weights}
    params = [t for t in p.values() if t.requires_grad]
    opt = torch.optim.Adam(params, lr=LR, eps=1e-8)

    def bn(x, name):
        # Keras's batch norm in training: batch statistics (biased variance) with epsilon 1e-3; the running
        # statistics blend 0.99 of the old value with 0.01 of the batch's
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
        with torch.no_grad():
            for key, new in (("moving_mean", mean), ("moving_variance", var)):
                p[f"{name}/{key}"].mul_(0.99).add_(0.01 * new)
        scale = p[f"{name}/gamma"] / torch.sqrt(var + 1e-3)
        return (x - mean[:, None, None]) * scale[:, None, None] + p[f"{name}/beta"][:, None, None]

    def forward(x):
        x = x * 0.5 - 0.25
        x = F.pad(x, (0, 1, 0, 1))  # TensorFlow's 'same' at stride 2 on 16: no pad before, one after
        x = torch.relu(bn(F.conv2d(x, p["conv2d/kernel"], stride=2), "batch_normalization"))
        x = F.conv2d(x, p["depthwise_conv2d/depthwise_kernel"], padding=1, groups=8)
        x = torch.relu(bn(x, "batch_normalization_1"))
        x = torch.relu(bn(F.conv2d(x, p["conv2d_1/kernel"]), "batch_normalization_2"))
        x = F.pad(x, (0, 1, 0, 1))  # ZeroPadding2D(((0, 1), (0, 1)))
        x = F.conv2d(x, p["depthwise_conv2d_1/depthwise_kernel"], stride=2, groups=16)
        x = torch.relu(bn(x, "batch_normalization_3"))
        x = torch.relu(bn(F.conv2d(x, p["conv2d_2/kernel"]), "batch_normalization_4"))
        s = "separable_conv2d"
        x = F.conv2d(x, p[f"{s}/depthwise_kernel"], padding=1, groups=24)
        x = torch.relu(F.conv2d(x, p[f"{s}/pointwise_kernel"], p[f"{s}/bias"]))
        x = F.avg_pool2d(x, 4)
        x = F.conv2d(x, p["conv2d_3/kernel"], p["conv2d_3/bias"])
        return x.reshape(x.shape[0], 10)

    def step(x, y):
        loss = F.cross_entropy(forward(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return torch, step, p


def test_mobilenet_matches_a_pytorch_twin():
    model = mobilenet()
    assert [type(l).__name__ for l in model.layers].count("DepthwiseConv2D") == 2
    torch, step, p = torch_twin(model)
    x, y = batch()
    want = [step(x, torch.from_numpy(y)) for _ in range(STEPS)]
    got = losses(model, x, y)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)
    for v in model.weights:  # trained parameters and Keras-style running statistics
        np.testing.assert_allclose(v.numpy(), p[v.path].detach().numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["cpp", "numba"])
def test_mobilenet_trains_on_the_compiled_backends(name):
    backend = load_backend(name)
    x, y = batch()
    want = losses(mobilenet(), x, y, steps=8)
    model = mobilenet(backend, "float32")
    got = losses(model, x.astype(np.float32), y, steps=8)
    assert got[-1] < 0.8 * got[0], got  # it learns the batch
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-4)
    ref = mobilenet()
    losses(ref, x, y, steps=8)
    np.testing.assert_allclose(
        model.predict(x[:4].astype(np.float32)), ref.predict(x[:4]), rtol=1e-2, atol=1e-3
    )
