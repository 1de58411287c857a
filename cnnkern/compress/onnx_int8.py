"""ONNX export of an int8 model (:meth:`cnnkern.compress.QuantizedModel.export_onnx`) with ONNX's standard
quantized operators, which onnxruntime runs on the CPU with its own int8 kernels. Needs the ``onnx`` extra:
``pip install "cnnkern[onnx]"``.

The graph (input (N, H, W, C) float32 as ``predict`` takes it, output its probabilities or logits):

* ``QuantizeLinear`` of the input with the model's input scale and zero point (round half to even, as
  cnnkern, but in float32: an input within float32 rounding of a half can take the other code), then
  ``Clip`` to the 7-bit codes [0, 127], and a ``Transpose`` to NCHW, ONNX's conv layout;
* each conv: ``QLinearConv`` (uint8 codes, int8 weights with per-output-channel scales and zero points 0,
  the int32 bias in accumulator units), then ``Clip`` to [lo, 127] (lo: the output zero point with a fused
  ReLU, else 0) since QLinearConv saturates to [0, 255]; a hidden dense layer is the same on a
  ``Reshape`` to (N, F, 1, 1) (QLinearMatMul has no bias);
* max pool: ``MaxPool`` on the uint8 codes; a ReLU on codes: ``Clip`` at its zero point; flatten:
  ``Transpose`` back to NHWC then ``Flatten``, as the int8 model's dense weights are in (H, W, C) order;
* the logits: ``MatMulInteger`` (uint8 x int8 -> int32, the input zero point subtracted), ``Add`` of the
  int32 bias, the accumulator times the per-channel scale in float64 (as the int8 model), ``Cast`` to
  float32, then ``Softmax`` / ``Relu``.

QLinearConv requantizes differently from cnnkern: it multiplies the int32 accumulator by the float32
``x_scale * w_scale / y_scale`` and rounds half to even, where cnnkern's fixed-point multiply rounds half up
(:mod:`cnnkern.backends.reference.quant`). The weight scales written are recovered from the fixed-point
multipliers (``w_scale = m * 2**-s * y_scale / x_scale``), so the two products differ by float32 rounding
only, and a code differs by one where the product falls within that rounding of a half (the effect on
the logits and classes is measured in docs/compression.md).

``exact=True`` writes the conv / dense layers as ``ConvInteger`` / ``MatMulInteger`` (int32 accumulators,
exact), ``Add`` of the bias and cnnkern's requantization in float64 (``Mul`` by ``m * 2**-s``, ``Add``
``y_zero + 1/2``, ``Floor``, ``Clip``, ``Cast``): every code equals cnnkern's, so do the logits (a layer
with a requantization factor below 2**-14 is refused). It is slower in onnxruntime (about 10x the
QLinearConv graph: its float64 element-wise operators).
``tests/test_onnx_int8.py`` checks both."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._typing import PathLike
from ..backends.reference.quant import ACT_MAX
from .onnx_export import _Graph, _onnx, write

if TYPE_CHECKING:
    from .qmodel import QuantizedModel

MIN_OPSET = 13  # MaxPool and Clip on uint8, Clip's bounds as inputs


class _Codes:
    """The current tensor of 7-bit codes: its value name, scale, zero point and rank (4: NCHW, 2: (N, F))."""

    def __init__(self, name: str, scale: float, zero: int, rank: int) -> None:
        self.name, self.scale, self.zero, self.rank = name, scale, zero, rank


def _u8(g: _Graph, base: str, v: int) -> str:
    return g.const(base, np.uint8(v), np.uint8)


def _clip(g: _Graph, x: str, lo: int, base: str) -> str:
    """``x`` clamped to [lo, ACT_MAX]: the 7-bit range (ONNX's uint8 operators saturate to 255)."""
    return g.node("Clip", [x, _u8(g, f"{base}.lo", lo), _u8(g, f"{base}.hi", ACT_MAX)], base)


def _requant_scales(arr: dict[str, np.ndarray], x_scale: float, y_scale: float) -> np.ndarray:
    """Per-channel weight scales whose product x_scale * w_scale / y_scale is the fixed-point factor
    m * 2**-s (in float64, then written as float32)."""
    real = arr["multiplier"].astype(np.float64) * np.exp2(-arr["shift"].astype(np.float64))
    return real * y_scale / x_scale


def _qlinear_conv(
    g: _Graph, cur: _Codes, stage: dict[str, Any], arr: dict[str, np.ndarray], base: str, **attrs: Any
) -> str:
    """QLinearConv with the stage's requantization (rounding in float32), then the clip to 7 bits."""
    w = arr["kernel"]
    if w.ndim == 2:
        w = w.reshape(*w.shape, 1, 1)
    y_scale, y_zero = float(stage["y_scale"]), int(stage["y_zero"])
    inputs = [
        cur.name,
        g.const(f"{base}.x_scale", np.float32(cur.scale)),
        _u8(g, f"{base}.x_zero", cur.zero),
        g.const(f"{base}.kernel", w, np.int8),
        g.const(f"{base}.w_scale", _requant_scales(arr, cur.scale, y_scale)),
        g.const(f"{base}.w_zero", np.zeros(w.shape[0], np.int8), np.int8),
        g.const(f"{base}.y_scale", np.float32(y_scale)),
        _u8(g, f"{base}.y_zero", y_zero),
        g.const(f"{base}.bias", arr["bias"], np.int32),
    ]
    y = g.node("QLinearConv", inputs, base, **attrs)
    return _clip(g, y, y_zero if stage["relu"] else 0, f"{base}.clip")


def _check_exact(arr: dict[str, np.ndarray], where: str) -> None:
    """Refuse a layer whose float64 requantization could round differently from cnnkern's (a shift above
    45: see :func:`_fixed_point`)."""
    if np.any((arr["multiplier"] != 0) & (arr["shift"] > 45)):
        raise ValueError(
            f"export_onnx(exact=True): {where} has a requantization factor below 2**-14 (shift > 45), which "
            "float64 cannot carry exactly; export it with exact=False"
        )


def _fixed_point(g: _Graph, acc: str, stage: dict[str, Any], arr: dict[str, np.ndarray], base: str) -> str:
    """cnnkern's requantization of the int32 accumulators ``acc`` (channels on axis 1) in float64:
    floor(acc * m * 2**-s + y_zero + 1/2) clamped to [lo, 127]. m * 2**-s is exact in float64. Where the
    product v = acc * m * 2**-s is below 2**8 in magnitude, acc * m is below 2**(s + 8) <= 2**53 (s <= 45),
    so v is exact, and so is v + y_zero + 1/2 (a multiple of 2**-s below 2**9); where |v| >= 2**8 the
    rounded v is too, and the clamp sends both to the same bound. So the codes equal cnnkern's
    (:func:`_check_exact` refuses s > 45)."""
    k = arr["kernel"].shape[0]
    shape = (1, k, 1, 1) if arr["kernel"].ndim == 4 else (1, k)
    real = arr["multiplier"].astype(np.float64) * np.exp2(-arr["shift"].astype(np.float64))
    y_zero = int(stage["y_zero"])
    lo = y_zero if stage["relu"] else 0
    f64 = np.float64
    z = g.node("Cast", [acc], f"{base}.f64", to=g.onnx.TensorProto.DOUBLE)
    z = g.node("Mul", [z, g.const(f"{base}.factor", real.reshape(shape), f64)], f"{base}.scaled")
    z = g.node("Add", [z, g.const(f"{base}.half", f64(y_zero + 0.5), f64)], f"{base}.shifted")
    z = g.node("Floor", [z], f"{base}.floor")
    bounds = [g.const(f"{base}.{n}", f64(v), f64) for n, v in (("lo", lo), ("hi", ACT_MAX))]
    z = g.node("Clip", [z, *bounds], f"{base}.clip")
    return g.node("Cast", [z], f"{base}.codes", to=g.onnx.TensorProto.UINT8)


def _accumulate(g: _Graph, cur: _Codes, arr: dict[str, np.ndarray], base: str, **attrs: Any) -> str:
    """The int32 accumulators, bias added: ConvInteger (with ``attrs``) or MatMulInteger."""
    w, zero = arr["kernel"], _u8(g, f"{base}.x_zero", cur.zero)
    if w.ndim == 4:
        acc = g.node("ConvInteger", [cur.name, g.const(f"{base}.kernel", w, np.int8), zero], base, **attrs)
        bias = arr["bias"].reshape(1, -1, 1, 1)
    else:
        wt = g.const(f"{base}.kernel", np.ascontiguousarray(w.T), np.int8)
        acc = g.node("MatMulInteger", [cur.name, wt, zero], base)
        bias = arr["bias"]
    return g.node("Add", [acc, g.const(f"{base}.bias", bias, np.int32)], f"{base}.acc")


def _stage(
    g: _Graph, i: int, stage: dict[str, Any], arr: dict[str, np.ndarray], cur: _Codes, exact: bool
) -> _Codes:
    op, base = stage["op"], stage["name"]
    where = f"stage {i} ({op} {base!r})"
    if op == "conv":
        if cur.rank != 4:
            raise ValueError(f"export_onnx: {where} is a convolution of a flattened tensor")
        t, b, le, r = stage["padding"]
        attrs = dict(
            kernel_shape=list(stage["kernel_size"]),
            strides=list(stage["stride"]),
            dilations=list(stage["dilation"]),
            pads=[t, le, b, r],
            group=int(stage["groups"]),
        )
        if exact:
            _check_exact(arr, where)
            y = _fixed_point(g, _accumulate(g, cur, arr, base, **attrs), stage, arr, base)
        else:
            y = _qlinear_conv(g, cur, stage, arr, base, **attrs)
        return _Codes(y, float(stage["y_scale"]), int(stage["y_zero"]), 4)
    if op in ("dense", "logits") and cur.rank != 2:
        raise ValueError(f"export_onnx: {where} takes a flattened (N, features) tensor, got rank {cur.rank}")
    if op == "dense":
        if exact:
            _check_exact(arr, where)
            y = _fixed_point(g, _accumulate(g, cur, arr, base), stage, arr, base)
        else:  # as a 1x1 convolution: QLinearMatMul has no bias
            shape4 = g.const(f"{base}.shape", [0, -1, 1, 1], np.int64)
            image = _Codes(g.node("Reshape", [cur.name, shape4], base), cur.scale, cur.zero, 4)
            y = _qlinear_conv(g, image, stage, arr, base)
            y = g.node("Reshape", [y, g.const(f"{base}.shape", [0, -1], np.int64)], base)
        return _Codes(y, float(stage["y_scale"]), int(stage["y_zero"]), 2)
    if op == "logits":  # accumulator x scale in float64, as the int8 model, then float32
        z = g.node("Cast", [_accumulate(g, cur, arr, base)], f"{base}.f64", to=g.onnx.TensorProto.DOUBLE)
        z = g.node("Mul", [z, g.const(f"{base}.scale", arr["scale"], np.float64)], f"{base}.logits")
        z = g.node("Cast", [z], f"{base}.f32", to=g.onnx.TensorProto.FLOAT)
        act = stage["activation"]
        if act == "softmax":
            z = g.node("Softmax", [z], f"{base}.softmax", axis=1)
        elif act == "relu":
            z = g.node("Relu", [z], f"{base}.relu")
        return _Codes(z, 1.0, 0, 2)
    if op == "maxpool":
        if cur.rank != 4:
            raise ValueError(f"export_onnx: {where} pools a flattened tensor")
        ph, pw = stage["padding"]
        y = g.node(
            "MaxPool",
            [cur.name],
            base,
            kernel_shape=list(stage["kernel_size"]),
            strides=list(stage["stride"]),
            pads=[ph, pw, ph, pw],
            ceil_mode=int(stage["ceil_mode"]),
        )
        return _Codes(y, cur.scale, cur.zero, 4)
    if op == "relu":
        return _Codes(_clip(g, cur.name, int(stage["zero"]), base), cur.scale, cur.zero, cur.rank)
    if op == "flatten":
        x = cur.name
        if cur.rank == 4:  # the int8 model flattens channels-last codes
            x = g.node("Transpose", [x], f"{base}.to_nhwc", perm=[0, 2, 3, 1])
        return _Codes(g.node("Flatten", [x], base, axis=1), cur.scale, cur.zero, 2)
    raise ValueError(f"export_onnx: {where} has no ONNX exporter")


def export_int8_onnx(model: QuantizedModel, path: PathLike, *, opset: int = 17, exact: bool = False) -> None:
    """Write the int8 ``model`` as an ONNX file at ``path`` (atomically): see the module docstring."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET} for the int8 graph, got {opset}")
    g = _Graph(_onnx())
    shape = model.input_shape
    if len(shape) != 3:
        raise ValueError(f"export_onnx: the int8 model's input must be (H, W, C) images, got {shape}")
    x = g.node(
        "QuantizeLinear",
        [
            "input",
            g.const("input.scale", np.float32(model.input_scale)),
            _u8(g, "input.zero", model.input_zero),
        ],
        "input.quantize",
    )
    x = _clip(g, x, 0, "input.clip")
    x = g.node("Transpose", [x], "to_nchw", perm=[0, 3, 1, 2])
    cur = _Codes(x, model.input_scale, model.input_zero, 4)
    for i, (stage, arr) in enumerate(zip(model.stages, model.arrays)):
        cur = _stage(g, i, stage, arr, cur, exact)
    units = int(model.arrays[-1]["kernel"].shape[0])
    write(g, model.name, shape, cur.name, (units,), opset, path)
