"""Batch-norm folding: :func:`fold_batchnorm`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import layers as layers_mod
from ..layers import to_numpy

if TYPE_CHECKING:
    from ..models import Sequential


def _foldable(prev: layers_mod.Layer | None, layer: layers_mod.Layer) -> bool:
    """A BatchNormalization right after a Conv2D or Dense with no activation in between (an activation
    would sit between the affine map and the normalisation, which then no longer composes into it)."""
    return (
        isinstance(layer, layers_mod.BatchNormalization)
        and isinstance(prev, (layers_mod.Conv2D, layers_mod.Dense))
        and prev.activation == "linear"
    )


def _folded(w: np.ndarray, b: np.ndarray | None, bn: layers_mod.BatchNormalization) -> tuple[Any, Any]:
    """(w', b') with w' x + b' = bn(w x + b) in inference: each output channel scaled by
    gamma / sqrt(var + eps), the bias moved by the running mean and beta. Computed in float64."""
    mean = to_numpy(bn.state["moving_mean"]).astype(np.float64)
    var = to_numpy(bn.state["moving_variance"]).astype(np.float64)
    gamma = to_numpy(bn.params["gamma"]).astype(np.float64) if bn.scale else np.ones_like(mean)
    beta = to_numpy(bn.params["beta"]).astype(np.float64) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.epsilon)
    w64 = w.astype(np.float64) * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    b64 = np.zeros_like(mean) if b is None else b.astype(np.float64)
    return w64.astype(w.dtype), ((b64 - mean) * scale + beta).astype(w.dtype)


def check_supported(model: Any, what: str) -> None:
    """cnnkern.compress reads a model as a linear stack of layers in the model's own layout: a functional
    graph, a channels_first layer or a conv subclass (DepthwiseConv2D) is refused by name."""
    from ..models import Sequential

    if not isinstance(model, Sequential):
        raise TypeError(
            f"{what} takes a Sequential model (a linear stack of layers), got {type(model).__name__}; "
            "functional graphs are not supported by cnnkern.compress yet"
        )
    for i, layer in enumerate(model.layers):
        where = f"layer {i} ({type(layer).__name__} {layer.name!r})"
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise ValueError(f"{what}: {where} has data_format={layer.data_format!r}; only channels_last")
        if isinstance(layer, layers_mod.Conv2D) and type(layer) is not layers_mod.Conv2D:
            raise ValueError(f"{what}: {where} is not supported by cnnkern.compress yet (Conv2D only)")


def fold_batchnorm(model: Sequential) -> Sequential:
    """An inference model equal to ``model`` with every BatchNormalization that directly follows a Conv2D
    or Dense without activation folded into that layer's kernel and bias (the layer gains a bias if it had
    none). Other batch norms are kept (in inference they use their running statistics). ``model`` is left
    unchanged; the result is built on the same backend and dtype, not compiled unless ``model`` was (its
    compile settings are copied; training it trains the folded network, without batch norm)."""
    model.build()
    check_supported(model, "fold_batchnorm")
    src = model.layers
    keep: list[layers_mod.Layer] = []
    weights: list[list[np.ndarray]] = []
    for i, layer in enumerate(src):
        if i > 0 and _foldable(src[i - 1], layer):
            continue
        cfg = layer.get_config()
        arrays = [to_numpy(d[k]) for d in (layer.params, layer.state) for k in d]
        nxt = src[i + 1] if i + 1 < len(src) else None
        if nxt is not None and _foldable(layer, nxt):
            assert isinstance(nxt, layers_mod.BatchNormalization)
            kernel = to_numpy(layer.params["kernel"])
            bias = to_numpy(layer.params["bias"]) if "bias" in layer.params else None
            arrays = list(_folded(kernel, bias, nxt))
            cfg["use_bias"] = True
        if i == 0:
            cfg["input_shape"] = list(model.input_shape or ())
        keep.append(layers_mod.from_config(type(layer).__name__, cfg))
        weights.append(arrays)
    from ..models import Sequential

    out = Sequential(keep, name=model.name, backend=model.backend, dtype=model.dtype)
    out.build(model.input_shape)
    out.set_weights([a for arrays in weights for a in arrays])
    if model.compiled:
        out.compile(
            optimizer=model.optimizer.get_config(), loss=model.loss.get_config(), metrics=model.metrics
        )
    return out
