"""The layer graph of a functional :class:`cnnkern.models.Model`: the layers in an order where every layer
comes after the layers it is called on, forward and backward over it.

The graph comes from KerasTensors (:mod:`cnnkern.layers.input`): from the output back to the input, every
tensor's producing layer, ordered by creation (a tensor is always created after the tensors it is computed
from, so creation order is a topological order, and it is the order Keras lists a model's layers in).

Forward keeps each layer's output until its last consumer has run. Backward runs the layers in reverse;
a tensor used by several layers (fan-out) receives the sum of their gradients (plain array-module ``+``:
there is no kernel for an elementwise sum of two arrays). Layers that neither hold parameters nor follow one
that does are not back-propagated through (as Sequential skips the layers before its first weights).

Fusion: a MaxPooling2D whose input is a Conv2D's output used by the pool alone runs with that Conv2D as one
kernel pair (ops.conv2d_act_maxpool_*), as in a Sequential; after another layer with an activation used by
the pool alone, the pool's backward applies that activation's gradient (ops.maxpool2d_act_backward).
"""

from __future__ import annotations

from typing import Any

from ._typing import BackendArray, Shape
from .layers import Conv2D, Layer, MaxPooling2D
from .layers.base import Context
from .layers.input import InputLayer, KerasTensor, is_merge


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
        consumers = [0] * len(tensors)
        last_use = list(range(len(tensors)))
        for i, ins_i in enumerate(self.inputs_of):
            for j in ins_i:
                consumers[j] += 1
                last_use[j] = i
        self.consumers = consumers
        # frees[i]: the outputs no layer after layer i reads (dropped during forward to save memory)
        self.frees: list[list[int]] = [[] for _ in tensors]
        for j, i in enumerate(last_use):
            if i != j and j != self.output:
                self.frees[i].append(j)
        self.needs_grad: list[bool] = []

    def in_shape(self, i: int, shapes: list[Shape]) -> Any:
        ins = self.inputs_of[i]
        return [shapes[j] for j in ins] if self.merge[i] else shapes[ins[0]]

    def build(self, internal: Shape, ctx: Context) -> None:
        """Build every layer for the per-sample input ``internal`` and link the fused pairs."""
        shapes: list[Shape] = []
        for i, layer in enumerate(self.layers):
            shapes.append(layer.build(internal if i == 0 else self.in_shape(i, shapes), ctx))
        self.needs_grad = []
        for i, layer in enumerate(self.layers):
            self.needs_grad.append(bool(layer.params) or any(self.needs_grad[j] for j in self.inputs_of[i]))
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, MaxPooling2D):
                continue
            j = self.inputs_of[i][0]
            prev = self.layers[j]
            sole = self.consumers[j] == 1 and j != self.output  # the pool alone reads prev's output
            conv = prev if sole and isinstance(prev, Conv2D) and prev.can_fuse_pool() else None
            layer.conv_source = conv
            if conv is not None:
                conv.pool_sink = layer
            layer.act_source = prev if conv is None and sole and hasattr(prev, "take_activation") else None

    def forward(self, x: BackendArray, training: bool, logits: bool) -> BackendArray:
        vals: list[Any] = [None] * len(self.layers)
        vals[0] = x
        for i in range(1, len(self.layers)):
            ins = self.inputs_of[i]
            arg = [vals[j] for j in ins] if self.merge[i] else vals[ins[0]]
            vals[i] = self.layers[i].forward(arg, training=training, logits=logits and i == self.output)
            for j in self.frees[i]:
                vals[j] = None
        return vals[self.output]

    def backward(self, d: BackendArray) -> None:
        """Back-propagate the gradient ``d`` of the output; each layer's ``grads`` filled in."""
        grads: list[Any] = [None] * len(self.layers)
        grads[self.output] = d
        for i in range(self.output, 0, -1):
            if not self.needs_grad[i]:
                continue
            dy, grads[i] = grads[i], None
            ins = self.inputs_of[i]
            need_dx = any(self.needs_grad[j] for j in ins)
            dx = self.layers[i].backward(dy, need_dx=need_dx)
            if not need_dx:
                continue
            for j, g in zip(ins, dx if self.merge[i] else [dx]):  # type: ignore[arg-type]
                if self.needs_grad[j]:
                    grads[j] = g if grads[j] is None else grads[j] + g  # fan-out: gradients add up

    def connections(self) -> list[str]:
        """For each layer, the names of the layers it is called on (summary's 'Connected to')."""
        return [", ".join(str(self.layers[j].name) for j in ins) for ins in self.inputs_of]
