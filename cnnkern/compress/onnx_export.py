"""ONNX export of a float model (:meth:`cnnkern.models.Sequential.export_onnx`), so that a model trained with
cnnkern can be served elsewhere (onnxruntime, ...). Needs the ``onnx`` extra: ``pip install
"cnnkern[onnx]"``.

The graph takes the model's input as the user feeds it, (N, H, W, C) float32 (a Transpose to NCHW first),
and gives its output (probabilities after a final softmax, else logits). Batch norms that follow a conv or
dense are folded first (:func:`cnnkern.compress.fold_batchnorm`); the others become BatchNormalization
nodes with their running statistics. Weights are written as float32 (a float64 model is cast). The int8
model's exporter is :mod:`cnnkern.compress.onnx_int8`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import layers as L
from .. import shapes
from .._io import atomic_write_bytes
from .._typing import PathLike
from ..layers import to_numpy
from .fold import fold_batchnorm

if TYPE_CHECKING:
    from ..models import Sequential

_ACT_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def _onnx() -> Any:
    """The onnx package, or an ImportError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise ImportError('export_onnx needs the onnx package: pip install "cnnkern[onnx]"') from None
    return onnx


class _Graph:
    """Nodes and initializers appended in order; each value named by a counter."""

    def __init__(self, onnx: Any) -> None:
        self.onnx, self.h = onnx, onnx.helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, base: str, a: Any, dtype: Any = np.float32) -> str:
        """An initializer holding ``a`` as ``dtype``."""
        n = self.name(base)
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(a, dtype), n))
        return n

    def node(self, op: str, inputs: list[str], base: str, **attrs: Any) -> str:
        out = self.name(base)
        self.nodes.append(self.h.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def activation(self, x: str, kind: str, alpha: float, base: str) -> str:
        if kind == "linear":
            return x
        if kind == "leaky_relu":
            return self.node("LeakyRelu", [x], base, alpha=float(alpha))
        if kind == "softmax":
            return self.node("Softmax", [x], base, axis=1)
        return self.node(_ACT_OPS[kind], [x], base)


def _layer(g: _Graph, layer: L.Layer, x: str, in_shape: tuple[int, ...]) -> str:
    name = layer.name or "layer"
    if isinstance(layer, L.Conv2D):
        w = g.const(f"{name}.kernel", to_numpy(layer.params["kernel"]))
        inputs = [x, w] + (
            [g.const(f"{name}.bias", to_numpy(layer.params["bias"]))] if "bias" in layer.params else []
        )
        _, h, wd = in_shape
        pads = [0, 0, 0, 0]
        if layer.padding == "same":
            (t, b), (le, r) = (
                shapes.same_padding(n, k, s, d)
                for n, k, s, d in zip((h, wd), layer.kernel_size, layer.strides, layer.dilation_rate)
            )
            pads = [t, le, b, r]
        y = g.node(
            "Conv",
            inputs,
            name,
            kernel_shape=list(layer.kernel_size),
            strides=list(layer.strides),
            dilations=list(layer.dilation_rate),
            pads=pads,
            group=layer.groups,
        )
        return g.activation(y, layer.activation, layer.alpha, f"{name}.act")
    if isinstance(layer, L.Dense):
        w = g.const(f"{name}.kernel", to_numpy(layer.params["kernel"]))
        inputs = [x, w] + (
            [g.const(f"{name}.bias", to_numpy(layer.params["bias"]))] if "bias" in layer.params else []
        )
        y = g.node("Gemm", inputs, name, transB=1)
        return g.activation(y, layer.activation, layer.alpha, f"{name}.act")
    if isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
        geo = layer._geom
        ph, pw = geo["padding"]
        attrs: dict[str, Any] = dict(
            kernel_shape=list(geo["kernel_size"]),
            strides=list(geo["stride"]),
            pads=[ph, pw, ph, pw],
            ceil_mode=int(geo["ceil_mode"]),
        )
        if isinstance(layer, L.AveragePooling2D):
            return g.node("AveragePool", [x], name, count_include_pad=0, **attrs)
        return g.node("MaxPool", [x], name, **attrs)
    if isinstance(layer, L.BatchNormalization):
        c = in_shape[0]
        mean = to_numpy(layer.state["moving_mean"])
        var = to_numpy(layer.state["moving_variance"])
        gamma = to_numpy(layer.params["gamma"]) if layer.scale else np.ones(c)
        beta = to_numpy(layer.params["beta"]) if layer.center else np.zeros(c)
        ins = [x] + [
            g.const(f"{name}.{k}", a)
            for k, a in (("scale", gamma), ("bias", beta), ("mean", mean), ("var", var))
        ]
        return g.node("BatchNormalization", ins, name, epsilon=float(layer.epsilon))
    if isinstance(layer, L.Flatten):
        return g.node("Flatten", [x], name, axis=1)
    if isinstance(layer, L.Dropout):
        return x
    if isinstance(layer, (L.Activation, L.ReLU, L.LeakyReLU)):
        return g.activation(x, layer.activation, layer.alpha, name)
    raise ValueError(f"export_onnx: layer {name!r} ({type(layer).__name__}) has no ONNX exporter")


def export_onnx(model: Sequential, path: PathLike, *, opset: int = 17) -> None:
    """Write ``model`` (built) as an ONNX file at ``path`` (atomically): see the module docstring."""
    onnx = _onnx()
    folded = fold_batchnorm(model)
    g = _Graph(onnx)
    shape = tuple(folded.input_shape or ())
    x = "input"
    internal: tuple[int, ...] = shape
    if len(shape) == 3:
        x = g.node("Transpose", [x], "to_nchw", perm=[0, 3, 1, 2])
        internal = (shape[2], shape[0], shape[1])
    for layer in folded.layers:
        x = _layer(g, layer, x, internal)
        assert layer.output_shape is not None
        internal = tuple(layer.output_shape)
    if len(internal) == 3:
        x = g.node("Transpose", [x], "to_nhwc", perm=[0, 2, 3, 1])
        internal = (internal[1], internal[2], internal[0])
    write(g, model.name, shape, x, internal, opset, path)


def write(
    g: _Graph,
    name: str,
    in_shape: tuple[int, ...],
    out: str,
    out_shape: tuple[int, ...],
    opset: int,
    path: PathLike,
) -> None:
    """The graph ``g`` (float32 input "input" of (N, *in_shape), output ``out`` of (N, *out_shape)) checked
    and written to ``path`` atomically."""
    onnx, h = g.onnx, g.h
    graph = h.make_graph(
        g.nodes,
        name,
        [h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", *in_shape])],
        [h.make_tensor_value_info(out, onnx.TensorProto.FLOAT, ["N", *out_shape])],
        initializer=g.inits,
    )
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], producer_name="cnnkern")
    onnx.checker.check_model(proto)
    atomic_write_bytes(path, proto.SerializeToString())
