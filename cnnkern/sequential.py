""":class:`Sequential`: a linear stack of layers, the special case of :class:`cnnkern.models.Model` whose
graph is a chain. It keeps its own forward and backward loops (a chain needs no graph bookkeeping: the
classic CNN's step stays as fast as it was) and its own file format ('cnnkern-sequential')."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from numpy.typing import DTypeLike

from . import layers as layers_mod
from ._typing import BackendArray, Shape
from .layers import Context, Layer
from .layers.input import InputLayer, KerasTensor
from .models import Model, _name_layer

if TYPE_CHECKING:
    from .backends.base import Backend


class Sequential(Model):
    """A linear stack of layers. The first entry may be ``cnnkern.Input(shape)`` (or an InputLayer), which
    sets the input shape as ``input_shape=`` on the first layer does. ``seed`` seeds the one generator used
    for initialisation, shuffling and dropout; ``dtype`` is 'float32' (every backend) or 'float64' (the
    reference backend)."""

    # set by build(): the index of the first layer with weights
    _first_param: int

    def __init__(
        self,
        layers: Iterable[Layer | KerasTensor] | None = None,
        name: str = "sequential",
        *,
        backend: str | Backend | None = None,
        dtype: DTypeLike = "float32",
        seed: int | None = None,
    ) -> None:
        self._setup(name, backend, dtype, seed)
        self._input_arg: Shape | None = None  # from an Input given as the first entry
        for layer in layers or ():
            self.add(layer)

    def add(self, layer: Layer | KerasTensor) -> None:
        if isinstance(layer, KerasTensor) and isinstance(layer._layer, InputLayer):
            layer = layer._layer
        if isinstance(layer, InputLayer):
            if self.layers or self._input_arg is not None:
                raise ValueError("an Input (InputLayer) may only be the first entry of a Sequential")
            self._input_arg = layer.input_shape
            return
        if not isinstance(layer, layers_mod.Layer):
            raise TypeError(f"layer must be a cnnkern.layers.Layer, got {type(layer).__name__}")
        if self.built:
            raise ValueError("cannot add layers to a model that is already built")
        if layer.input_shape is not None and (self.layers or self._input_arg is not None):
            raise ValueError(
                f"input_shape is only allowed on the first layer (without an Input before it), got it on "
                f"{type(layer).__name__}"
            )
        _name_layer(layer, {str(l.name) for l in self.layers}, self.name)
        self.layers.append(layer)

    def _declared_shape(self) -> Shape | None:
        if self._input_arg is not None:
            return self._input_arg
        return self.layers[0].input_shape if self.layers else None

    @property
    def _output_layer(self) -> Layer:
        return self.layers[-1]

    def _build_layers(self, internal: Shape, ctx: Context) -> None:
        from ._modelfile import dry_build  # sizes checked before any weight is allocated

        dry_build(self.layers, internal, self.dtype)
        for layer in self.layers:
            internal = layer.build(internal, ctx)
        # a max pool right after a Conv2D runs with it as one kernel pair (ops.conv2d_act_maxpool_*); after
        # any other layer with an activation, it applies that activation's gradient in its own backward pass
        for prev, layer in zip(self.layers, self.layers[1:]):
            if not isinstance(layer, layers_mod.MaxPooling2D):
                continue
            conv = prev if isinstance(prev, layers_mod.Conv2D) and prev.can_fuse_pool() else None
            layer.conv_source = conv
            if conv is not None:
                conv.pool_sink = layer
            layer.act_source = prev if conv is None and hasattr(prev, "take_activation") else None
        self._first_param = next((i for i, l in enumerate(self.layers) if l.params), len(self.layers))

    def _forward(self, x: BackendArray, training: bool, logits: bool) -> BackendArray:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer.forward(x, training=training, logits=logits and i == last)
        return x

    def _backward(self, d: BackendArray) -> None:
        # layers before the first one with parameters are not back-propagated through
        for i in range(len(self.layers) - 1, self._first_param - 1, -1):
            d = self.layers[i].backward(d, need_dx=i > self._first_param)
