"""The model zoo of ``cnnkern bench --zoo`` (issue 15): small image models as people write them, each timed
against a PyTorch twin built from the same weights (:mod:`.twin`).

The list is fixed in ``benchmarks/NOTES.md`` (change both together). Between them the models cover 1- and
3-channel inputs at 28x28, 32x32 and 64x64, 'same' and 'valid' padding, stride-2 convolutions, 1x1, 3x3 and
5x5 kernels, depthwise and grouped convolutions, batch norm after conv (training, and inference with running
statistics), max and average pooling (a full-size average pool as the global one), ReLU, leaky ReLU, tanh,
sigmoid, dropout and dense layers of 512 and 1024 units. Every model ends in a 10-way softmax, trained with
Adam (PyTorch's form, lr 1e-3) on sparse categorical cross-entropy.

Workloads: :class:`ZooTrainStep` (``Sequential.train_on_batch``) and :class:`ZooInference` (``predict`` at
batch 32 and 128; at batch 1 the latency of one image through ``predict_on_batch`` when the model has it, else
``predict``). PyTorch trains the twin in NCHW or channels_last and infers in eval mode under
``torch.inference_mode``. Before timing, every candidate is checked against the twin in float64: its first two
training losses (dropout switched off for the check: masks are random), or its probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .twin import nchw, torch_twin

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..layers import Layer
    from ..models import Sequential

LR = 1e-3


@dataclass(frozen=True)
class ZooModel:
    name: str
    input_shape: tuple[int, int, int]  # (H, W, C), Keras's order
    covers: str  # what the model adds to the zoo's coverage (benchmarks/NOTES.md)
    layers: Callable[[], list[Layer]]


def _classic() -> list[Layer]:
    from .. import layers as L

    return [
        L.Conv2D(32, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"),
        L.Flatten(),
        L.Dense(64, activation="relu"),
        L.Dense(10, activation="softmax"),
    ]


def conv_bn_relu(filters: int, **kw: Any) -> list[Layer]:
    """A 3x3 'same' convolution without bias, batch norm (PyTorch's convention) and ReLU."""
    from .. import layers as L

    return [
        L.Conv2D(filters, 3, padding="same", use_bias=False, **kw),
        L.BatchNormalization(convention="torch"),
        L.ReLU(),
    ]


def _vgg_bn() -> list[Layer]:
    from .. import layers as L

    return [
        *conv_bn_relu(32),
        *conv_bn_relu(32),
        L.MaxPooling2D(2),
        *conv_bn_relu(64),
        *conv_bn_relu(64),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(512, activation="relu"),
        L.Dense(10, activation="softmax"),
    ]


def _all_conv() -> list[Layer]:
    from .. import layers as L

    def conv(filters: int, kernel: int, strides: int = 1) -> list[Layer]:
        return [L.Conv2D(filters, kernel, strides=strides, padding="same"), L.LeakyReLU(0.1)]

    return [
        *conv(32, 3),
        *conv(32, 3, strides=2),
        L.Dropout(0.2),
        *conv(64, 3),
        *conv(64, 3, strides=2),
        L.Dropout(0.2),
        *conv(64, 1),
        L.Conv2D(10, 1),
        L.AveragePooling2D(8),  # global average pooling of the 8x8 map
        L.Flatten(),
        L.Activation("softmax"),
    ]


def _lenet5() -> list[Layer]:
    from .. import layers as L

    return [
        L.Conv2D(6, 5, padding="same", activation="tanh"),
        L.AveragePooling2D(2),
        L.Conv2D(16, 5, activation="sigmoid"),
        L.AveragePooling2D(2),
        L.Flatten(),
        L.Dense(512, activation="tanh"),
        L.Dense(10, activation="softmax"),
    ]


def _mobile() -> list[Layer]:
    from .. import layers as L

    return [
        L.Conv2D(16, 3, strides=2, padding="same", activation="relu"),  # 64 -> 32
        L.Conv2D(16, 3, padding="same", groups=16, activation="relu"),  # depthwise
        L.Conv2D(32, 1, activation="relu"),  # pointwise
        L.Conv2D(32, 3, strides=2, padding="same", groups=32, use_bias=False),  # depthwise, 32 -> 16
        L.BatchNormalization(convention="torch"),
        L.ReLU(),
        L.Conv2D(64, 1, use_bias=False),
        L.BatchNormalization(convention="torch"),
        L.ReLU(),
        L.Conv2D(64, 3, padding="same", groups=4, activation="relu"),  # grouped
        L.AveragePooling2D(16),  # global average pooling
        L.Flatten(),
        L.Dense(10, activation="softmax"),
    ]


def two_bn_blocks(c1: int, c2: int, units: int) -> list[Layer]:
    """conv-bn-relu of c1 channels, 2x2 max pool, conv-bn-relu of c2, max pool, then dense ``units`` (ReLU),
    dropout 0.5 and the 10-way softmax: the zoo's wide_head and the recipe model bn2."""
    from .. import layers as L

    return [
        *conv_bn_relu(c1),
        L.MaxPooling2D(2),
        *conv_bn_relu(c2),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(units, activation="relu"),
        L.Dropout(0.5),
        L.Dense(10, activation="softmax"),
    ]


def _wide_head() -> list[Layer]:
    return two_bn_blocks(16, 32, 1024)


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel("classic", (28, 28, 1), "the classic Fashion-MNIST CNN: 'valid' 3x3, max pool", _classic),
        ZooModel(
            "vgg_bn", (32, 32, 3), "3 channels, 'same' 3x3, batch norm after every conv, dense 512", _vgg_bn
        ),
        ZooModel(
            "all_conv",
            (32, 32, 3),
            "stride-2 'same' convs, leaky ReLU, dropout, 1x1 convs, global avg pool",
            _all_conv,
        ),
        ZooModel("lenet5", (28, 28, 1), "5x5 kernels, average pooling, tanh / sigmoid, dense 512", _lenet5),
        ZooModel(
            "mobile", (64, 64, 3), "64x64 input, depthwise and grouped convs, 1x1 convs, batch norm", _mobile
        ),
        ZooModel(
            "wide_head",
            (28, 28, 1),
            "batch norm on 1 channel, a 1024-unit dense layer, dropout 0.5",
            _wide_head,
        ),
    )
}


def build(name: str, backend: Any = None, dtype: str = "float32", seed: int = 0) -> Sequential:
    """Zoo model ``name``, built and compiled (Adam, PyTorch's form; sparse categorical cross-entropy)."""
    from .. import models, optimizers

    if name not in ZOO:
        raise ValueError(f"unknown zoo model {name!r}; choose from {', '.join(ZOO)}")
    spec = ZOO[name]
    layers = spec.layers()
    layers[0].input_shape = spec.input_shape  # as input_shape=... on the first layer
    model = models.Sequential(layers, backend=backend, dtype=dtype, seed=seed)
    model.compile(optimizer=optimizers.Adam(learning_rate=LR), loss="sparse_categorical_crossentropy")
    model.build()
    return model


def zoo_weights(name: str, seed: int = 0) -> list[np.ndarray]:
    """Float64 weights of model ``name``: its initialisers' draw, with non-zero biases and batch-norm
    scales, shifts and running statistics (so that every path of the check carries a value)."""
    model = build(name, backend="reference", dtype="float64", seed=seed)
    rng = np.random.default_rng(seed + 7)
    spread = {
        "bias": (-0.05, 0.05),
        "beta": (-0.1, 0.1),
        "gamma": (0.8, 1.2),
        "moving_mean": (-0.1, 0.1),
        "moving_variance": (0.5, 1.5),
    }
    for layer in model.layers:
        for d in (layer.params, layer.state):
            for key in d:
                if key in spread:
                    d[key] = rng.uniform(*spread[key], size=d[key].shape)
    return model.get_weights()


def zoo_batch(name: str, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W, C) float32 in [0, 1) and labels (N,) int64."""
    rng = np.random.default_rng(seed + 1)
    images = rng.random((batch, *ZOO[name].input_shape), dtype=np.float32)
    return images, rng.integers(0, 10, size=batch).astype(np.int64)


def _dropout(model_or_module: Any, on: bool, rates: dict[int, float]) -> None:
    """Switch every dropout layer of a cnnkern model or torch module off (remembering its rate) or back on."""
    from .. import layers as L

    if hasattr(model_or_module, "layers"):
        items = [(i, l, "rate") for i, l in enumerate(model_or_module.layers) if isinstance(l, L.Dropout)]
    else:  # a torch module (torch is imported: the module exists)
        from ..torch_ref import require_torch

        dropout = require_torch().nn.Dropout
        items = [(i, m, "p") for i, m in enumerate(model_or_module.modules()) if isinstance(m, dropout)]
    for i, obj, attr in items:
        if on:
            setattr(obj, attr, rates[i])
        else:
            rates[i] = getattr(obj, attr)
            setattr(obj, attr, 0.0)


class _Bound:
    """A timed callable that also exposes what it runs, so the check can switch dropout off."""

    def __init__(self, fn: Callable[[], Any], target: Any) -> None:
        self.fn, self.target = fn, target

    def __call__(self) -> Any:
        return self.fn()


def _rel_problem(got: Any, want: np.ndarray, rtol: float, what: str) -> str | None:
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        return f"{what}: shape {got.shape}, expected {want.shape}"
    err = np.abs(got - want)
    if not np.all(err <= rtol * np.max(np.abs(want))):  # also false for NaN
        return f"{what}: max |error| {np.nanmax(err):.3g} against the float64 PyTorch twin"
    return None


def centered_log(probs: Any) -> np.ndarray:
    """log(p) minus its row mean: the logits up to a shift. Near-uniform probabilities (a freshly initialised
    model) hide a wrong logit in p itself; this shows it at its own scale."""
    from .workloads import to_numpy

    logp = np.log(np.asarray(to_numpy(probs), dtype=np.float64))
    return logp - logp.mean(axis=1, keepdims=True)


class _ZooWorkload:
    torch_formats = ("nchw", "channels_last")
    bytes: int | None = None
    flops: int | None = None

    def __init__(self, model: str, batch: int, seed: int = 0) -> None:
        self.model, self.batch, self.seed = model, batch, seed
        self.weights = zoo_weights(model, seed)
        self.images, self.labels = zoo_batch(model, batch, seed)

    def _cnnkern(self, backend: Backend) -> Sequential:
        model = build(self.model, backend=backend, seed=self.seed)
        model.set_weights([w.astype(np.float32) for w in self.weights])
        return model

    def _twin(self, dtype: str, memory_format: str) -> tuple[Any, Any, Any]:
        """The torch twin, its input and labels, in ``dtype`` and ``memory_format``."""
        from .. import torch_ref

        torch = torch_ref.require_torch()
        net = torch_twin(build_float64(self.model, self.weights, self.seed), dtype)
        fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
        net = net.to(memory_format=fmt)
        x = torch.tensor(nchw(self.images), dtype=getattr(torch, dtype)).contiguous(memory_format=fmt)
        return net, x, torch.tensor(self.labels)


def build_float64(name: str, weights: list[np.ndarray], seed: int = 0) -> Sequential:
    """Model ``name`` on the reference backend in float64 holding ``weights`` (what the twin copies)."""
    model = build(name, backend="reference", dtype="float64", seed=seed)
    model.set_weights(weights)
    return model


class ZooTrainStep(_ZooWorkload):
    """One training step (forward, loss, backward, Adam) of a zoo model at ``batch``."""

    kernel = "zoo_train_step"
    rtol = 5e-4
    # Adam divides each gradient by its own running RMS, so float32 rounding in a tiny gradient becomes a
    # full-size step: after two steps a correct float32 run (PyTorch channels_last's batch norm: up to 0.9% of
    # vgg_bn's largest logit at batch 128) parts from the float64 twin by far more than at inference. The
    # check then catches a wrong gradient or update (a 10% error in one layer's weights), not float noise.
    logits_rtol = 2e-2

    @property
    def label(self) -> str:
        return f"zoo {self.model} training step b{self.batch}"

    def bind(self, backend: Backend) -> _Bound:
        model = self._cnnkern(backend)
        return _Bound(lambda: model.train_on_batch(self.images, self.labels), model)

    def bind_torch(self, memory_format: str = "nchw", dtype: str = "float32") -> _Bound:
        from .. import torch_ref

        torch = torch_ref.require_torch()
        net, x, y = self._twin(dtype, memory_format)
        opt = torch.optim.Adam(net.parameters(), lr=LR)

        def step() -> float:
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            return float(loss.detach())

        return _Bound(step, net)

    def verify(self, fn: Callable[[], Any]) -> str | None:
        """None if the first two losses, dropout off, and the logits after those two steps (which show the
        update of every weight) match the float64 twin's."""
        if not isinstance(fn, _Bound):
            return "not a zoo candidate (bind() / bind_torch() give one)"
        oracle = self.bind_torch("nchw", "float64")
        rates: dict[int, float] = {}
        _dropout(fn.target, False, rates)
        _dropout(oracle.target, False, {})
        try:
            got = [float(np.ravel(fn())[0]) for _ in range(2)]
        finally:
            _dropout(fn.target, True, rates)
        want = np.array([oracle() for _ in range(2)])
        problem = _rel_problem(got, want, self.rtol, "losses of steps 1 and 2")
        return problem or _rel_problem(
            centered_log(self._probabilities(fn.target)),
            centered_log(self._probabilities(oracle.target)),
            self.logits_rtol,
            "logits after two steps",
        )

    def _probabilities(self, net: Any) -> Any:
        """Inference (running statistics, no dropout) of a cnnkern model or a torch twin after training."""
        if hasattr(net, "predict"):
            return net.predict(self.images, batch_size=self.batch)
        from .. import torch_ref

        torch = torch_ref.require_torch()
        p = next(net.parameters())
        x = torch.tensor(nchw(self.images), dtype=p.dtype)
        net.eval()
        try:
            with torch.inference_mode():
                return torch.softmax(net(x), 1)
        finally:
            net.train()


class ZooInference(_ZooWorkload):
    """Class probabilities of one batch (``predict``; ``predict_on_batch`` at batch 1 where the model has
    it), batch norm on its running statistics, dropout inactive."""

    kernel = "zoo_inference"
    rtol = 1e-3

    @property
    def label(self) -> str:
        return f"zoo {self.model} inference b{self.batch}"

    def bind(self, backend: Backend) -> _Bound:
        model = self._cnnkern(backend)
        if self.batch == 1 and hasattr(model, "predict_on_batch"):
            return _Bound(lambda: model.predict_on_batch(self.images), model)
        return _Bound(lambda: model.predict(self.images, batch_size=self.batch), model)

    def bind_torch(self, memory_format: str = "nchw", dtype: str = "float32") -> _Bound:
        from .. import torch_ref

        torch = torch_ref.require_torch()
        net, x, _ = self._twin(dtype, memory_format)
        net.eval()

        def infer() -> Any:
            with torch.inference_mode():
                return torch.softmax(net(x), 1)

        return _Bound(infer, net)

    def verify(self, fn: Callable[[], Any]) -> str | None:
        want = centered_log(self.bind_torch("nchw", "float64")())
        return _rel_problem(centered_log(fn()), want, self.rtol, "logits (log-probabilities, centred)")


def zoo_workloads(names: list[str], batches: list[int], seed: int = 0) -> list[ZooTrainStep | ZooInference]:
    """Training steps at every batch above 1 and inference at every batch, model by model."""
    out: list[ZooTrainStep | ZooInference] = []
    for name in names:
        out += [ZooTrainStep(name, b, seed) for b in batches if b > 1]
        out += [ZooInference(name, b, seed) for b in batches]
    return out
