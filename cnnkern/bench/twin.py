"""A PyTorch twin of a built cnnkern :class:`~cnnkern.models.Sequential`: the same layers as ``torch.nn``
modules, holding copies of the same weights, for the model zoo of ``cnnkern bench --zoo``.

The twin follows cnnkern's conventions, which are PyTorch's where they differ from Keras's: weights are
canonical (conv ``(K, C/groups, R, S)``, dense ``(out, in)``), Flatten is C, H, W order, batch norm is
built with ``convention='torch'`` by the zoo. 'same' convolutions pad like TensorFlow (the extra row and
column at the end, :func:`same_padding`), so the twin pads explicitly with ``nn.ZeroPad2d``. The final
softmax is left out: the twin returns logits, which ``F.cross_entropy`` takes (cnnkern fuses the softmax
into the loss the same way). Only the layer types the zoo uses are translated; any other is a ValueError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import layers as L
from ..layers import to_numpy
from ..torch_ref import require_torch

if TYPE_CHECKING:
    from ..models import Sequential


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """(before, after) padding of one dimension for 'same' (TensorFlow: output ceil(size / stride), the odd
    pixel at the end)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _activation(torch: Any, kind: str | None, alpha: float, last: bool, name: str) -> list[Any]:
    nn = torch.nn
    if kind in (None, "linear"):
        return []
    if kind == "softmax":
        if not last:
            raise ValueError(f"{name}: softmax is only translated on the last layer (the twin gives logits)")
        return []
    table = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
    if kind == "leaky_relu":
        return [nn.LeakyReLU(alpha)]
    if kind not in table:
        raise ValueError(f"{name}: activation {kind!r} has no twin")
    return [table[kind]()]


def _param(torch: Any, layer: L.Layer, key: str, dtype: Any) -> Any:
    return torch.nn.Parameter(torch.tensor(to_numpy(layer.params[key]), dtype=dtype))


def torch_twin(model: Sequential, dtype: str = "float32") -> Any:
    """``torch.nn.Sequential`` equal to the built ``model``, in training mode, parameters of ``dtype``."""
    torch = require_torch()
    nn = torch.nn
    tdtype = getattr(torch, dtype)
    mods: list[Any] = []
    last = len(model.layers) - 1
    for i, layer in enumerate(model.layers):
        name = f"{layer.name} ({type(layer).__name__})"
        if isinstance(layer, L.Conv2D):
            c, h, w = layer.in_shape
            (r, s), (sh, sw), (dh, dw) = layer.kernel_size, layer.strides, layer.dilation_rate
            if layer.padding == "same":
                top, bottom = same_padding(h, r, sh, dh)
                left, right = same_padding(w, s, sw, dw)
                if top or bottom or left or right:
                    mods.append(nn.ZeroPad2d((left, right, top, bottom)))
            conv = nn.Conv2d(
                c,
                layer.filters,
                (r, s),
                (sh, sw),
                0,
                (dh, dw),
                layer.groups,
                bias=layer.use_bias,
                dtype=tdtype,
            )
            conv.weight = _param(torch, layer, "kernel", tdtype)
            if layer.use_bias:
                conv.bias = _param(torch, layer, "bias", tdtype)
            mods += [conv, *_activation(torch, layer.activation, layer.alpha, i == last, name)]
        elif isinstance(layer, L.Dense):
            fc = nn.Linear(layer.in_shape[0], layer.units, bias=layer.use_bias, dtype=tdtype)
            fc.weight = _param(torch, layer, "kernel", tdtype)
            if layer.use_bias:
                fc.bias = _param(torch, layer, "bias", tdtype)
            mods += [fc, *_activation(torch, layer.activation, layer.alpha, i == last, name)]
        elif isinstance(layer, L.BatchNormalization):
            if layer.convention != "torch":
                raise ValueError(f"{name}: the twin needs convention='torch' batch norm")
            bn = nn.BatchNorm2d(layer.in_shape[0], eps=layer.epsilon, momentum=layer.momentum, dtype=tdtype)
            if "gamma" in layer.params:
                bn.weight = _param(torch, layer, "gamma", tdtype)
            if "beta" in layer.params:
                bn.bias = _param(torch, layer, "beta", tdtype)
            assert bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.copy_(torch.tensor(to_numpy(layer.state["moving_mean"])))
            bn.running_var.copy_(torch.tensor(to_numpy(layer.state["moving_variance"])))
            mods.append(bn)
        elif isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
            if layer.padding != "valid":
                raise ValueError(f"{name}: only 'valid' pooling has a twin")
            cls = nn.MaxPool2d if isinstance(layer, L.MaxPooling2D) else nn.AvgPool2d
            mods.append(cls(layer.pool_size, layer.strides))
        elif isinstance(layer, L.Flatten):
            mods.append(nn.Flatten())
        elif isinstance(layer, L.Dropout):
            mods.append(nn.Dropout(layer.rate))
        elif isinstance(layer, (L.Activation, L.ReLU, L.LeakyReLU)):
            mods += _activation(torch, layer.activation, layer.alpha, i == last, name)
        else:
            raise ValueError(f"{name}: no PyTorch twin for this layer type")
    return nn.Sequential(*mods).train()


def nchw(images: np.ndarray) -> np.ndarray:
    """The model layer's (N, H, W, C) images as contiguous NCHW, PyTorch's input."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
