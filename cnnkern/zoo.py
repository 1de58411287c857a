"""Ready-made models: the classic Keras Fashion-MNIST CNN and a small VGG-style one with batch norm, shared
by the command line, the benchmarks and the tests (a neutral home, so that neither imports the other)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .models import Sequential


def compiled(model: Sequential, lr: float) -> Sequential:
    """``model`` compiled as `cnnkern train` trains: Adam at ``lr``, sparse cross-entropy, accuracy."""
    from . import optimizers

    model.compile(
        optimizer=optimizers.Adam(learning_rate=lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def classic_cnn(seed: int | None = None, backend: Any = None, lr: float = 1e-3) -> Sequential:
    """The classic Keras Fashion-MNIST CNN, compiled with Adam and sparse categorical cross-entropy."""
    # imported here, as `import cnnkern` and the command line's start-up do not need the model layer
    from . import layers, models

    model = models.Sequential(backend=backend, seed=seed)
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    return compiled(model, lr)


def classic_cnn_with_weights(
    weights: Sequence[np.ndarray], backend: Any = None, lr: float = 1e-3
) -> Sequential:
    """:func:`classic_cnn` built with the given weights (copied: the model trains the arrays it is given)."""
    model = classic_cnn(seed=0, backend=backend, lr=lr)
    model.build()
    model.set_weights([w.copy() for w in weights])
    return model


def vgg_bn(
    seed: int | None = None,
    backend: Any = None,
    widths: Sequence[int] = (32, 32, 64, 64),
    dense: int = 128,
    lr: float = 1e-3,
) -> Sequential:
    """A small VGG-style Fashion-MNIST network with batch norm: four 3x3 'same' convolutions without bias
    (``widths`` filters), each followed by batch norm (PyTorch's momentum) and ReLU, max pools after the
    first, third and fourth (28 -> 14 -> 7 -> 3), then Dense(``dense``, relu) and Dense(10, softmax);
    compiled as :func:`classic_cnn`. The model of the int8 comparisons (``cnnkern bench --int8``,
    ``benchmarks/int8_ptq.py``): its batch norms fold into the convolutions before quantization."""
    from . import layers, models

    if len(widths) != 4:
        raise ValueError(f"widths must give the filters of the 4 convolutions, got {list(widths)}")
    model = models.Sequential(backend=backend, seed=seed)
    for i, filters in enumerate(widths):
        kw: dict[str, Any] = {"input_shape": (28, 28, 1)} if i == 0 else {}
        model.add(layers.Conv2D(filters, 3, padding="same", use_bias=False, **kw))
        model.add(layers.BatchNormalization(convention="torch"))  # momentum 0.1: short runs infer well
        model.add(layers.ReLU())
        if i != 1:
            model.add(layers.MaxPooling2D(2))
    model.add(layers.Flatten())
    model.add(layers.Dense(dense, activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    return compiled(model, lr)
