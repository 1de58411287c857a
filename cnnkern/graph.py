"""The layer graph of a functional :class:`cnnkern.models.Model`: the layers in an order where every layer
comes after the layers it is called on, and which layers each reads.

The graph comes from KerasTensors (:mod:`cnnkern.layers.input`): from the output back to the input, every
tensor's producing layer, ordered by creation (a tensor is always created after the tensors it is computed
from, so creation order is a topological order, and it is the order Keras lists a model's layers in).

Building the graph's layers gives its execution plan (:mod:`cnnkern.plan`), which runs forward and backward
(a tensor used by several layers receives the sum of their gradients) and decides what runs fused.
"""

from __future__ import annotations

from typing import Any

from ._typing import Shape
from .layers import Layer
from .layers.base import Context
from .layers.input import InputLayer, KerasTensor, is_merge
from .plan import Plan


def _tensors(value: Any, what: str) -> list[KerasTensor]:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for t in items:
        if not isinstance(t, KerasTensor):
            raise TypeError(
                f"Model {what} must be KerasTensors (cnnkern.Input(...) or a layer's output), got "
                f"{type(t).__name__}"
            )
    return items


class Graph:
    """``layers`` in topological order; ``inputs_of[i]``: the indices of the layers whose outputs layer i
    is called on; ``output``: the index of the output layer (the last)."""

    def __init__(self, inputs: Any, outputs: Any) -> None:
        ins, outs = _tensors(inputs, "inputs"), _tensors(outputs, "outputs")
        if len(ins) != 1 or len(outs) != 1:
            raise ValueError(
                f"cnnkern.Model takes one input and one output tensor, got {len(ins)} input(s) and "
                f"{len(outs)} output(s): multi-input / multi-output models are not supported (fit, "
                f"evaluate and the loss take one array each)"
            )
        source, sink = ins[0], outs[0]
        if not isinstance(source._layer, InputLayer) or source._inputs:
            raise ValueError(f"Model inputs must come from cnnkern.Input(...), got {source!r}")
        seen: dict[int, KerasTensor] = {}
        stack = [sink]
        while stack:
            t = stack.pop()
            if id(t) not in seen:
                seen[id(t)] = t
                stack.extend(t._inputs)
        tensors = sorted(seen.values(), key=lambda t: t._order)
        for t in tensors:
            if not t._inputs and t is not source:
                raise ValueError(
                    f"the output depends on input {t!r}, which is not among the model's inputs (a "
                    f"disconnected graph)"
                )
        if tensors[0] is not source:
            raise ValueError(f"the output {sink!r} does not depend on the model's input {source!r}")
        index = {id(t): i for i, t in enumerate(tensors)}
        self.layers: list[Layer] = [t._layer for t in tensors]
        self.inputs_of: list[list[int]] = [[index[id(u)] for u in t._inputs] for t in tensors]
        self.merge = [is_merge(layer) for layer in self.layers]
        self.output = len(tensors) - 1

    def in_shape(self, i: int, shapes: list[Shape]) -> Any:
        ins = self.inputs_of[i]
        return [shapes[j] for j in ins] if self.merge[i] else shapes[ins[0]]

    def build(self, internal: Shape, ctx: Context) -> Plan:
        """Build every layer for the per-sample input ``internal``; the plan that runs them."""
        shapes: list[Shape] = []
        for i, layer in enumerate(self.layers):
            shapes.append(layer.build(internal if i == 0 else self.in_shape(i, shapes), ctx))
        return Plan(self.layers, self.inputs_of, self.merge)

    def connections(self) -> list[str]:
        """For each layer, the names of the layers it is called on (summary's 'Connected to')."""
        return [", ".join(str(self.layers[j].name) for j in ins) for ins in self.inputs_of]
