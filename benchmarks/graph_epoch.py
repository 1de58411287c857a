"""Issue 14's acceptance runs: the ResNet-style functional model (tests/test_graph_models.py's, on 28x28x1)
and a MobileNet-style Sequential model (depthwise-separable blocks) each train one epoch of Fashion-MNIST on
the given backends (and 50 steps on the reference backend: the loss must fall), printing the loss of the
first and last 50 steps, the test accuracy and the time.

    PYTHONPATH=. python benchmarks/graph_epoch.py --data /usr/share/datasets/fashion-mnist
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import cnnkern as keras
from cnnkern import datasets, layers, models, optimizers
from tests.test_graph_models import resnet


def mobilenet(backend: str) -> models.Sequential:
    def block(filters: int, strides: int) -> list[layers.Layer]:
        return [
            layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.Conv2D(filters, 1, use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
        ]

    return models.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(16, 3, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            *block(32, 2),
            *block(64, 2),
            *block(64, 1),
            layers.GlobalAveragePooling2D(),
            layers.Dense(10, activation="softmax"),
        ],
        backend=backend,
        seed=0,
    )


class Losses(keras.callbacks.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.last = 0.0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # logs hold the epoch's running mean: recover each step's loss from it
        mean = float((logs or {})["loss"])
        self.losses.append(mean * (batch + 1) - self.last)
        self.last = mean * (batch + 1)


def run(name: str, backend: str, data: tuple, steps: int | None, batch: int) -> None:
    (x, y), (xt, yt) = data
    if steps is not None:
        x, y = x[: steps * batch], y[: steps * batch]
    model = resnet((28, 28, 1), 10, backend=backend, seed=0) if name == "resnet" else mobilenet(backend)
    model.compile(optimizer=optimizers.Adam(learning_rate=1e-3), metrics=["accuracy"])
    cb = Losses()
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=[cb], shuffle=True)
    seconds = time.perf_counter() - start
    k = max(1, min(50, len(cb.losses) // 5))  # steps per window: 50, or a fifth of a short run
    first, last = np.mean(cb.losses[:k]), np.mean(cb.losses[-k:])
    acc = model.evaluate(xt, yt, batch_size=256)[1]
    print(
        f"{name:9s} {backend:9s} {len(x):6d} images, {len(cb.losses)} steps of {batch}: {seconds:7.1f} s; "
        f"mean loss of the first {k} steps {first:.3f}, last {k} {last:.3f}; test accuracy {acc:.4f}",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backends", default="cpp,numba")
    p.add_argument("--data", default=None, help="Fashion-MNIST folder (default: the bundled subset)")
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    fm = datasets.fashion_mnist
    (x, y), (xt, yt) = fm.load_data(args.data) if args.data else fm.load_data(subset=True)
    data = ((x[..., None] / 255.0).astype(np.float32), y), ((xt[..., None] / 255.0).astype(np.float32), yt)
    for name in ("resnet", "mobilenet"):
        run(name, "reference", data, 50, 32)  # 50 steps: the first 10 against the last 10
        for backend in args.backends.split(","):
            run(name, backend, data, None, args.batch)


if __name__ == "__main__":
    main()
