"""Ready-made models: the classic Keras Fashion-MNIST CNN, shared by the command line, the benchmarks and
the tests (a neutral home, so that neither imports the other)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .models import Sequential


def classic_cnn(seed: int | None = None, backend: Any = None, lr: float = 1e-3) -> Sequential:
    """The classic Keras Fashion-MNIST CNN, compiled with Adam and sparse categorical cross-entropy."""
    # imported here, as `import cnnkern` and the command line's start-up do not need the model layer
    from . import layers, models, optimizers

    model = models.Sequential(backend=backend, seed=seed)
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    model.compile(
        optimizer=optimizers.Adam(learning_rate=lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def classic_cnn_with_weights(
    weights: Sequence[np.ndarray], backend: Any = None, lr: float = 1e-3
) -> Sequential:
    """:func:`classic_cnn` built with the given weights (copied: the model trains the arrays it is given)."""
    model = classic_cnn(seed=0, backend=backend, lr=lr)
    model.build()
    model.set_weights([w.copy() for w in weights])
    return model
