"""Reading a saved functional model (format 'cnnkern-functional') as untrusted input, the graph part of
:mod:`cnnkern._modelfile`: each layer entry's ``inbound`` (the names of earlier layers it is called on) is
checked, the layers are called on each other's KerasTensors in file order (which builds shape-only copies:
every shape is checked before any weight is allocated), and the expected weights come from a shape-only
build of each layer, counted against the model's weight limit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _modelfile as mf
from ._typing import PathLike, Shape
from .layers.input import InputLayer, KerasTensor, is_merge

if TYPE_CHECKING:
    from .backends.base import Backend
    from .models import Model


def model_and_weights(
    path: PathLike, cfg: dict[str, Any], backend: str | Backend | None
) -> tuple[Model, dict[str, Shape]]:
    """The (unbuilt) functional model of the architecture ``cfg`` (top level already checked) and
    ``{weight key: shape}``; errors are ``ValueError`` naming the file and the layer."""
    from .models import Model

    built = [mf._layer(path, i, entry) for i, entry in enumerate(cfg["layers"])]
    tensors: dict[str, KerasTensor] = {}
    for i, (entry, layer) in enumerate(zip(cfg["layers"], built)):
        where = f"{path}: layer {i} ({type(layer).__name__} {layer.name!r})"
        inbound = entry.get("inbound")
        if i == 0 or isinstance(layer, InputLayer):
            if i != 0 or not isinstance(layer, InputLayer) or inbound != []:
                raise ValueError(
                    f"{where}: the first layer, and only it, must be an InputLayer with inbound []"
                )
            tensors[str(layer.name)] = layer.output
            continue
        if (
            not isinstance(inbound, list)
            or not inbound
            or not all(isinstance(n, str) and n in tensors for n in inbound)
        ):
            raise ValueError(
                f"{where}: inbound must be a non-empty list of the names of layers before it, got "
                f"{mf._short(inbound)}"
            )
        args = [tensors[n] for n in inbound]
        try:
            tensors[str(layer.name)] = layer(args if is_merge(layer) else args[0] if len(args) == 1 else args)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    try:
        model = Model(
            tensors[str(built[0].name)],
            tensors[str(built[-1].name)],
            name=cfg["name"],
            backend=backend,
            dtype=cfg["dtype"],
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if len(model.layers) != len(built):
        unused = sorted({str(l.name) for l in built} - {str(l.name) for l in model.layers})
        raise ValueError(f"{path}: layer(s) {', '.join(unused)} do not lead to the output (the last layer)")
    graph = model._graph
    assert graph is not None
    ctx = mf._ShapeContext(cfg["dtype"])
    shape = tuple(cfg["input_shape"])
    shapes: list[Shape] = [(shape[2], shape[0], shape[1]) if len(shape) == 3 else shape]
    expected: dict[str, Shape] = {}
    for i, layer in enumerate(model.layers[1:], 1):
        try:
            out, weights = mf.probe(layer, graph.in_shape(i, shapes), ctx)
        except ValueError as exc:
            raise ValueError(f"{path}: layer {i} ({type(layer).__name__} {layer.name!r}): {exc}") from None
        shapes.append(out)
        expected.update({f"{i:03d}.{layer.name}/{k}": s for k, s in weights.items()})
    return model, expected
