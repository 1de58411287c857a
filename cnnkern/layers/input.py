"""The functional API's symbolic side (Keras 3 names): :func:`Input`, :class:`InputLayer` and
:class:`KerasTensor`, the placeholder a layer returns when it is called on one.

Calling a layer on a KerasTensor records the call (the layer and the tensors it was called on) and works out
the output shape with a shape-only build of a copy of the layer (no weight allocated; the real weights are
created when the :class:`cnnkern.models.Model` is built, on its backend, dtype and generator). A layer may be
called once: a layer shared between two calls (Keras's shared layers) is refused with an error.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from .._typing import BackendArray, Shape
from .base import Layer, keras_shape

_order = itertools.count()  # creation order: a tensor's inputs always come before it


class KerasTensor:
    """A symbolic tensor: its per-sample ``shape`` (Keras order, with ``None`` for the batch: (None, H, W, C)
    or (None, features)), the layer that produced it and the tensors that layer was called on."""

    def __init__(self, internal: Shape, layer: Layer, inputs: Sequence[KerasTensor]) -> None:
        self._internal = tuple(int(d) for d in internal)  # (C, H, W) or (F,)
        self._layer = layer
        self._inputs = tuple(inputs)
        self._order = next(_order)

    @property
    def shape(self) -> tuple[int | None, ...]:
        return keras_shape(self._internal)

    @property
    def name(self) -> str | None:
        return self._layer.name

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape}, produced by {type(self._layer).__name__} {self.name!r}>"


class InputLayer(Layer):
    """The layer behind :func:`Input`: the model's input, passed on unchanged. ``shape``: per-sample, without
    the batch, (H, W, C) or (features,). As the first entry of a ``Sequential`` it sets the input shape."""

    def __init__(self, shape: Sequence[int] | None = None, **kwargs: Any) -> None:
        if shape is None:
            raise ValueError("InputLayer needs shape=(H, W, C) or (features,), without the batch")
        super().__init__(input_shape=tuple(shape), **kwargs)
        assert self.input_shape is not None  # set from shape by Layer.__init__, which checks it
        s = self.input_shape
        internal = (s[2], s[0], s[1]) if len(s) == 3 else s
        self.output = KerasTensor(internal, self, ())

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        return x

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        return dy

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg["shape"] = cfg.pop("input_shape")
        return cfg


def Input(shape: Sequence[int], name: str | None = None) -> KerasTensor:
    """A symbolic model input of per-sample ``shape`` (H, W, C) or (features,), without the batch (Keras's
    ``keras.Input``). Call layers on it, then make a model with ``cnnkern.Model(inputs, outputs)``."""
    return InputLayer(shape=shape, name=name).output


def _probe(layer: Layer, in_shape: Any) -> tuple[Shape, dict[str, Shape]]:
    """The output shape and ``{weight name: shape}`` of ``layer`` on the per-sample input ``in_shape``,
    from a build of a copy of it (shape-only for cnnkern's own layers; see cnnkern._modelfile.probe)."""
    from .. import _modelfile

    return _modelfile.probe(layer, in_shape)


def is_merge(layer: Layer) -> bool:
    """Whether ``layer`` takes a list of tensors (Add, Concatenate)."""
    return bool(getattr(layer, "merges", False))


def call_symbolic(layer: Layer, inputs: Any) -> KerasTensor:
    """``layer(inputs)`` on KerasTensors: the output KerasTensor (see the module's docstring)."""
    many = isinstance(inputs, (list, tuple))
    tensors = list(inputs) if many else [inputs]
    if not tensors or not all(isinstance(t, KerasTensor) for t in tensors):
        got = ", ".join(type(t).__name__ for t in tensors) or "an empty list"
        raise TypeError(
            f"{type(layer).__name__} {layer.name or ''}: layers are called on cnnkern.Input(...) tensors or "
            f"the outputs of layers called on them (KerasTensor), got {got}; to run a model on arrays use "
            f"model.predict(x)"
        )
    if isinstance(layer, InputLayer):
        raise TypeError("an InputLayer is not called on tensors: use cnnkern.Input(shape) instead")
    if is_merge(layer) != many:
        want = "a list of two or more tensors" if is_merge(layer) else "one tensor"
        raise TypeError(f"{type(layer).__name__} {layer.name or ''}: takes {want}, got {len(tensors)}")
    if getattr(layer, "_called", False):
        raise ValueError(
            f"{type(layer).__name__} {layer.name!r} is already called on a tensor; shared layers (one layer "
            f"called twice) are not supported: create a second layer"
        )
    in_shape: Any = [t._internal for t in tensors] if many else tensors[0]._internal
    try:
        out, _ = _probe(layer, in_shape)
    except ValueError as exc:
        shapes = ", ".join(str(t.shape) for t in tensors)
        raise ValueError(f"{type(layer).__name__} {layer.name or ''} called on {shapes}: {exc}") from None
    layer._called = True  # type: ignore[attr-defined]
    return KerasTensor(out, layer, tensors)
