"""Keras-style layers over :mod:`cnnkern.ops`: Conv2D, DepthwiseConv2D, SeparableConv2D, MaxPooling2D,
AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, BatchNormalization, Dense, Flatten, Reshape,
ZeroPadding2D, Rescaling, Activation, ReLU, LeakyReLU, Dropout, Add, Concatenate, InputLayer (and Input), and
the random preprocessing (augmentation) layers RandomFlip, RandomTranslation, RandomCrop, RandomErasing,
RandomRotation, RandomZoom, RandomContrast, RandomBrightness (``preprocessing``).

Argument names and defaults are Keras's. Layouts:

* The user's images are ``(N, H, W, C)`` as in Keras; :class:`cnnkern.models.Sequential` transposes them
  ONCE at the model input to the canonical ``(N, C, H, W)``, and every layer works in NCHW from there on.
  Shapes printed by ``summary()`` are given back in Keras's order, ``(None, H, W, C)``.
* :class:`Flatten` flattens NCHW activations in C, H, W order (PyTorch's order, not Keras's H, W, C). It
  only matters when weights are copied to or from another framework's Dense layer after a Flatten.
* Weights are canonical: conv ``(K, C, R, S)``, dense ``(out, in)``.

A layer is built once its input shape is known (``build``), keeps on ``forward`` exactly what its
``backward`` needs (its input for conv/dense/batch norm, its output for an activation, the argmax for max
pooling, the mask for dropout) and writes its parameter gradients to ``grads``. Arrays live on the model's
backend (NumPy, or CuPy for cuda). Layers never call a backend directly: every kernel goes through
:mod:`cnnkern.ops`.

The layers live in one module per kernel family, the stems of :mod:`cnnkern.ops`: ``base`` (Layer, Context,
shared helpers), ``activation``, ``conv``, ``pool`` (also the global poolings), ``batchnorm``, ``dense``,
``core`` (Flatten, Reshape, ZeroPadding2D, Rescaling, Dropout), ``merge`` (Add, Concatenate: called on a list
of tensors), ``input`` (Input, InputLayer, KerasTensor: the functional API, see
:class:`cnnkern.models.Model`) and ``preprocessing``. Import them from here: the module a class lives in is
not part of the API.
"""

from __future__ import annotations

from typing import Any

# the names other modules use besides __all__ (``X as X``: re-exported on purpose)
from .activation import ACTIVATIONS as ACTIVATIONS
from .activation import KERAS_LEAKY_RELU_SLOPE as KERAS_LEAKY_RELU_SLOPE
from .activation import Activation, LeakyReLU, ReLU
from .activation import ActivationSource as ActivationSource
from .base import Context as Context
from .base import Layer
from .base import Variable as Variable
from .base import keras_shape as keras_shape
from .base import to_numpy as to_numpy
from .batchnorm import BatchNormalization
from .conv import Conv2D, DepthwiseConv2D, SeparableConv2D
from .core import Dropout, Flatten, Rescaling, Reshape, ZeroPadding2D
from .dense import Dense
from .input import Input, InputLayer
from .input import KerasTensor as KerasTensor
from .merge import Add, Concatenate
from .pool import AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D
from .preprocessing import PREPROCESSING_LAYERS as PREPROCESSING_LAYERS
from .preprocessing import (
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomErasing,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
)
from .preprocessing import fuse as fuse_preprocessing

__all__ = [
    "Activation",
    "Add",
    "AveragePooling2D",
    "BatchNormalization",
    "Concatenate",
    "Conv2D",
    "Dense",
    "DepthwiseConv2D",
    "Dropout",
    "Flatten",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Input",
    "InputLayer",
    "Layer",
    "LeakyReLU",
    "MaxPooling2D",
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomErasing",
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
    "ReLU",
    "Rescaling",
    "Reshape",
    "SeparableConv2D",
    "ZeroPadding2D",
    "fuse_preprocessing",
]


LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (
        Conv2D,
        MaxPooling2D,
        AveragePooling2D,
        BatchNormalization,
        Dense,
        Flatten,
        Activation,
        ReLU,
        LeakyReLU,
        Dropout,
        DepthwiseConv2D,
        SeparableConv2D,
        ZeroPadding2D,
        Reshape,
        Rescaling,
        InputLayer,
        Add,
        Concatenate,
        GlobalAveragePooling2D,
        GlobalMaxPooling2D,
    )
}
LAYERS.update({cls.__name__: cls for cls in PREPROCESSING_LAYERS})  # issue 16's augmentation layers


def from_config(class_name: str, config: dict[str, Any]) -> Layer:
    """Rebuild a layer from ``get_config()`` output (used by :func:`cnnkern.models.load_model`)."""
    if class_name not in LAYERS:
        raise ValueError(f"unknown layer class {class_name!r} (known: {', '.join(LAYERS)})")
    if class_name == "BatchNormalization" and "convention" not in config:
        # get_config always names it; a config without it predates the key, when 'torch' was the default
        config = {**config, "convention": "torch"}
    return LAYERS[class_name](**config)
