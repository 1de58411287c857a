""":class:`Sequential`: a linear stack of layers, the special case of :class:`cnnkern.models.Model` whose
graph is a chain: its plan (:mod:`cnnkern.plan`) is that of the chain. It keeps its own file format
('cnnkern-sequential')."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from numpy.typing import DTypeLike

from . import layers as layers_mod
from ._typing import Shape
from .layers import Context, Layer
from .layers.input import InputLayer, KerasTensor
from .models import Model, _name_layer
from .plan import Plan

if TYPE_CHECKING:
    from .backends.base import Backend


class Sequential(Model):
    """A linear stack of layers. The first entry may be ``cnnkern.Input(shape)`` (or an InputLayer), which
    sets the input shape as ``input_shape=`` on the first layer does. ``seed`` seeds the one generator used
    for initialisation, shuffling and dropout; ``dtype`` is 'float32' (every backend) or 'float64' (the
    reference backend)."""

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
        layers_mod.fuse_preprocessing(self.layers)  # runs of augmentation layers as one kernel call
        self._plan = self._chain_plan()

    def _chain_plan(self, **fusions: bool) -> Plan:
        """The plan of the chain (layer i reads layer i - 1; the first, the model input)."""
        n = len(self.layers)
        return Plan(self.layers, [[i - 1] if i else [] for i in range(n)], [False] * n, **fusions)
