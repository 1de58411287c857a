"""The text of :meth:`cnnkern.models.Model.summary`: the layer table in Keras's layout (with the layers
each is connected to, for a functional model), the totals, and optionally the execution plan."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .layers import Layer, keras_shape

if TYPE_CHECKING:
    from .models import Model


def _shape(layer: Layer) -> tuple[int | None, ...]:
    assert layer.output_shape is not None, f"{layer.name} is not built"
    return keras_shape(layer.output_shape)


def summary_text(model: Model, plan: bool = False) -> str:
    """The summary of the built ``model``; ``plan``: then its plan (:meth:`cnnkern.plan.Plan.describe`)."""
    links = model._graph.connections() if model._graph is not None else None
    rows = [(f"{l.name} ({type(l).__name__})", str(_shape(l)), f"{l.count_params():,}") for l in model.layers]
    w0 = max(28, *(len(r[0]) + 2 for r in rows))
    w1 = max(22, *(len(r[1]) + 2 for r in rows))
    w3 = 0 if links is None else max(14, *(len(c) + 2 for c in links))
    width = w0 + w1 + 12 + w3
    trainable = sum(int(a.size) for l in model.layers if l.trainable for a in l.params.values())
    total = model.count_params()
    lines = [
        f'Model: "{model.name}"  (backend: {model._ctx.backend.name}, {model.dtype.name})',
        "_" * width,
        f"{'Layer (type)':<{w0}}{'Output Shape':<{w1}}{'Param #':>10}"
        + ("" if links is None else f"  {'Connected to':<{w3 - 2}}"),
        "=" * width,
    ]
    lines += [
        f"{a:<{w0}}{b:<{w1}}{c:>10}" + ("" if links is None else f"  {links[i]}").rstrip()
        for i, (a, b, c) in enumerate(rows)
    ]
    lines += [
        "=" * width,
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
        "_" * width,
    ]
    if plan:
        lines += [f"Plan: {len(model._plan.steps)} steps (backward runs them in reverse)"]
        lines += model._plan.describe()
    return "\n".join(lines)
