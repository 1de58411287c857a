"""The classic CNN's training step and inference as benchmark workloads.

cnnkern runs them through the model layer, exactly as ``cnnkern train`` builds the model
(:func:`cnnkern.zoo.classic_cnn`: Adam, final softmax with the fused loss, accuracy metric): one training
step is ``Sequential.train_on_batch``, inference is ``Sequential.predict`` on one batch. PyTorch runs
:mod:`cnnkern.torch_ref`'s step, NCHW or channels_last. Every candidate starts from the same weights and
batch.

The check before timing compares each candidate's first two losses (the second one sees the Adam update, so
it checks backward and the optimizer too) with :class:`ComposedCNN`, the same network composed directly
from :mod:`cnnkern.ops` on the reference backend in float64, independent of the model layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .. import backends, ops
from ..zoo import classic_cnn_with_weights
from . import shapes as S

if TYPE_CHECKING:
    from ..backends.base import Backend

LR = 1e-3


def classic_weights(seed: int = 0) -> list[np.ndarray]:
    """Parameters of the classic CNN (:data:`.shapes.CLASSIC_PARAM_SHAPES`): He-uniform weights, small
    uniform biases (non-zero, so that the bias paths are exercised), float32."""
    rng = np.random.default_rng(seed)
    out = []
    for shape in S.CLASSIC_PARAM_SHAPES:
        if len(shape) == 1:
            out.append(rng.uniform(-0.05, 0.05, size=shape).astype(np.float32))
        else:
            fan_in = int(np.prod(shape[1:]))
            limit = np.sqrt(6.0 / fan_in)
            out.append(rng.uniform(-limit, limit, size=shape).astype(np.float32))
    return out


def classic_batch(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images (N,28,28,1) float32 in [0,1) and labels (N,) int64: the model layer's (Keras's) input layout,
    which for one channel is also NCHW's memory order."""
    rng = np.random.default_rng(seed + 1)
    images = rng.random((batch, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 10, size=batch).astype(np.int64)
    return images, labels


class ComposedCNN:
    """The classic CNN's forward pass and training step composed from :mod:`cnnkern.ops` on one backend
    (float64 on the reference backend: the oracle of the check). Adam in PyTorch's form, lr 1e-3."""

    def __init__(
        self, weights: Sequence[np.ndarray], backend: str | Backend = "reference", dtype: str = "float64"
    ) -> None:
        self.backend = backends.resolve(backend)
        self.params = [np.array(w, dtype=dtype) for w in weights]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.step = 0

    def _ops(self, kernel: str, *args: Any, **kw: Any) -> Any:
        return getattr(ops, kernel)(*args, backend=self.backend, **kw)

    def forward(self, images: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Logits and what backward needs; ``images`` (N,28,28,1) are reshaped to (N,1,28,28)."""
        w1, b1, w2, b2, w3, b3, wd1, bd1, wd2, bd2 = self.params
        x = np.ascontiguousarray(images.reshape(images.shape[0], 1, 28, 28), dtype=w1.dtype)
        f = self._ops
        a1 = f("activation_forward", f("conv2d_forward", x, w1, b1), "relu")
        p1, i1 = f("maxpool2d_forward", a1, kernel_size=2)
        a2 = f("activation_forward", f("conv2d_forward", p1, w2, b2), "relu")
        p2, i2 = f("maxpool2d_forward", a2, kernel_size=2)
        a3 = f("activation_forward", f("conv2d_forward", p2, w3, b3), "relu")
        flat = a3.reshape(a3.shape[0], -1)
        h = f("activation_forward", f("dense_forward", flat, wd1, bd1), "relu")
        logits = f("dense_forward", h, wd2, bd2)
        return logits, (x, a1, p1, i1, a2, p2, i2, a3, flat, h)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        logits, _ = self.forward(images)
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> float:
        """One step; returns the loss before the update (a float)."""
        f = self._ops
        w1, b1, w2, b2, w3, b3, wd1, bd1, wd2, bd2 = self.params
        logits, (x, a1, p1, i1, a2, p2, i2, a3, flat, h) = self.forward(images)
        loss, probs = f("softmax_cross_entropy_forward", logits, labels)
        dz = f("softmax_cross_entropy_backward", probs, labels)
        dh, dwd2, dbd2 = f("dense_backward", dz, h, wd2)
        dflat, dwd1, dbd1 = f("dense_backward", f("activation_backward", dh, h, "relu"), flat, wd1)
        da3 = f("activation_backward", dflat.reshape(a3.shape), a3, "relu")
        dp2, dw3, db3 = f("conv2d_backward", da3, p2, w3)
        da2 = f("activation_backward", f("maxpool2d_backward", dp2, i2, a2.shape), a2, "relu")
        dp1, dw2, db2 = f("conv2d_backward", da2, p1, w2)
        da1 = f("activation_backward", f("maxpool2d_backward", dp1, i1, a1.shape), a1, "relu")
        _, dw1, db1 = f("conv2d_backward", da1, x, w1, need_dx=False)
        self.step += 1
        grads = (dw1, db1, dw2, db2, dw3, db3, dwd1, dbd1, dwd2, dbd2)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            f("adam_update", p, g, m, v, step=self.step, lr=LR)
        return float(loss)


def _compare_values(got: Any, want: Any, rtol: float, what: str) -> str | None:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return f"{what}: shape {got.shape}, expected {want.shape}"
    err = np.abs(got - want)
    if not np.all(err <= rtol * np.max(np.abs(want))):  # also false for NaN
        return f"{what}: {got.ravel()[:4]} vs expected {want.ravel()[:4]} (max |error| {np.nanmax(err):.3g})"
    return None


class TrainStep:
    """One training step of the classic CNN at ``batch`` (forward, loss, backward, Adam)."""

    kernel = "train_step"
    torch_formats = ("nchw", "channels_last")
    rtol = 2e-4

    def __init__(self, batch: int, seed: int = 0) -> None:
        self.batch = batch
        self.seed = seed
        self.weights = classic_weights(seed)
        self.images, self.labels = classic_batch(batch, seed)
        self._expected: list[float] | None = None

    @property
    def label(self) -> str:
        return f"classic CNN training step b{self.batch}"

    @property
    def flops(self) -> int:
        return S.train_step_flops(self.batch)

    bytes: int | None = None

    def bind(self, backend: Backend) -> Callable[[], float]:
        """``fn()`` runs one step through the model layer and returns its loss."""
        model = classic_cnn_with_weights(self.weights, backend, lr=LR)
        # [loss, accuracy]: the model has a metric, so train_on_batch returns a list
        return lambda: cast("list[float]", model.train_on_batch(self.images, self.labels))[0]

    def bind_torch(self, memory_format: str = "nchw") -> Callable[[], float]:
        from .. import torch_ref

        step = torch_ref.TrainStep(self.weights, memory_format, lr=LR)
        images = np.ascontiguousarray(self.images.reshape(self.batch, 1, 28, 28))
        return lambda: float(step(images, self.labels))

    def expected(self) -> list[float]:
        if self._expected is None:
            net = ComposedCNN(self.weights)
            self._expected = [net.train_step(self.images, self.labels) for _ in range(2)]
        return self._expected

    def verify(self, fn: Callable[[], float]) -> str | None:
        """None if the first two steps' losses agree with the float64 oracle, else what differs."""
        return _compare_values([fn(), fn()], self.expected(), self.rtol, "losses of steps 1 and 2")


class Inference:
    """The classic CNN's forward pass on one batch, to class probabilities (``Sequential.predict``)."""

    kernel = "inference"
    torch_formats = ("nchw", "channels_last")
    rtol = 1e-3

    def __init__(self, batch: int, seed: int = 0) -> None:
        self.batch = batch
        self.seed = seed
        self.weights = classic_weights(seed)
        self.images, _ = classic_batch(batch, seed)
        self._expected: np.ndarray | None = None

    @property
    def label(self) -> str:
        return f"classic CNN inference b{self.batch}"

    @property
    def flops(self) -> int:
        return S.inference_flops(self.batch)

    bytes: int | None = None

    def bind(self, backend: Backend) -> Callable[[], np.ndarray]:
        model = classic_cnn_with_weights(self.weights, backend, lr=LR)
        return lambda: model.predict(self.images, batch_size=self.batch)

    def bind_torch(self, memory_format: str = "nchw") -> Callable[[], Any]:
        from .. import torch_ref

        torch = torch_ref.require_torch()
        forward = torch_ref.Inference(self.weights, memory_format)
        images = np.ascontiguousarray(self.images.reshape(self.batch, 1, 28, 28))
        return lambda: torch.softmax(forward(images), 1)

    def expected(self) -> np.ndarray:
        if self._expected is None:
            self._expected = ComposedCNN(self.weights).probabilities(self.images)
        return self._expected

    def verify(self, fn: Callable[[], Any]) -> str | None:
        from .workloads import to_numpy

        return _compare_values(to_numpy(fn()), self.expected(), self.rtol, "probabilities")
