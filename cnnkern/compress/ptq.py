"""Post-training static quantization: :func:`quantize`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from .. import layers as L
from .. import shapes
from ..layers import to_numpy
from .fold import fold_batchnorm
from .qmodel import FORMAT, FORMAT_VERSION, QuantizedModel
from .qparams import (
    RangeObserver,
    activation_qparams,
    fixed_point,
    quantize_bias,
    quantize_weights,
)

if TYPE_CHECKING:
    from ..models import Sequential


def _is_relu(layer: L.Layer) -> bool:
    return isinstance(layer, L.ReLU) or (isinstance(layer, L.Activation) and layer.activation == "relu")


def _is_identity(layer: L.Layer) -> bool:
    return isinstance(layer, L.Dropout) or (isinstance(layer, L.Activation) and layer.activation == "linear")


def _conv_padding(layer: L.Conv2D, h: int, w: int) -> list[int]:
    """(top, bottom, left, right) of the layer on an h x w input."""
    if layer.padding != "same":
        return [0, 0, 0, 0]
    pads = [
        shapes.same_padding(n, k, s, d)
        for n, k, s, d in zip((h, w), layer.kernel_size, layer.strides, layer.dilation_rate)
    ]
    return [pads[0][0], pads[0][1], pads[1][0], pads[1][1]]


def _plan(model: Sequential) -> list[tuple[str, int, int]]:
    """(op, index of the layer it quantizes, index of the layer whose output it produces) for each stage;
    ReLUs right after a conv / dense are fused into it. Unsupported layers raise, naming them."""
    layers = model.layers
    weighted = [i for i, l in enumerate(layers) if isinstance(l, (L.Conv2D, L.Dense))]
    if not weighted or not isinstance(layers[weighted[-1]], L.Dense):
        raise ValueError("quantize needs a model whose last layer with weights is a Dense (the float logits)")
    plan: list[tuple[str, int, int]] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        where = f"layer {i} ({type(layer).__name__} {layer.name!r})"
        if isinstance(layer, (L.Conv2D, L.Dense)):
            last = i == weighted[-1]
            act = layer.activation
            if act not in ("linear", "relu") and not (last and act == "softmax"):
                raise ValueError(f"quantize: {where} has activation {act!r}; the int8 model has ReLU only")
            out = i
            if act == "linear" and not last and i + 1 < len(layers) and _is_relu(layers[i + 1]):
                out = i + 1  # the ReLU is fused into the epilogue
            op = "logits" if last else "conv" if isinstance(layer, L.Conv2D) else "dense"
            plan.append((op, i, out))
            i = out + 1
            if last:
                rest = [l for l in layers[i:] if not _is_identity(l)]
                ok = len(rest) == 0 or (
                    len(rest) == 1
                    and (_is_relu(rest[0]) or getattr(rest[0], "activation", None) == "softmax")
                )
                if not ok or (rest and act != "linear"):
                    raise ValueError(
                        "quantize: only one ReLU or softmax may follow the last Dense, got "
                        f"{[type(l).__name__ for l in rest]}"
                    )
                if rest:
                    plan[-1] = (f"logits:{'relu' if _is_relu(rest[0]) else 'softmax'}", i - 1, i - 1)
                return plan
            continue
        if isinstance(layer, L.MaxPooling2D):
            plan.append(("maxpool", i, i))
        elif isinstance(layer, L.Flatten):
            plan.append(("flatten", i, i))
        elif _is_relu(layer):
            plan.append(("relu", i, i))
        elif not _is_identity(layer):
            hint = (
                " (a batch norm that follows no conv / dense cannot be folded)"
                if isinstance(layer, L.BatchNormalization)
                else ""
            )
            raise ValueError(
                f"quantize: {where} has no int8 kernel{hint}; supported: Conv2D, Dense, MaxPooling2D, "
                "Flatten, ReLU, Dropout"
            )
        i += 1
    return plan


def _observe(
    model: Sequential, images: np.ndarray, record: set[int], method: str, percentile: float, batch_size: int
) -> tuple[RangeObserver, dict[int, RangeObserver]]:
    """The range of the input and of each recorded layer's output over the calibration images."""
    inp = RangeObserver(method, percentile)
    obs = {i: RangeObserver(method, percentile) for i in record}
    for lo in range(0, len(images), batch_size):
        x = model._to_internal(images[lo : lo + batch_size], name="calibration_images")
        inp.observe(to_numpy(x))
        for i, layer in enumerate(model.layers):
            x = layer.forward(x, training=False)
            if i in obs:
                obs[i].observe(to_numpy(x))
    return inp, obs


def quantize(
    model: Sequential,
    calibration_images: ArrayLike,
    *,
    method: str = "minmax",
    percentile: float = 99.99,
    backend: str | None = None,
    batch_size: int = 128,
) -> QuantizedModel:
    """An int8 inference model of ``model`` (post-training static quantization).

    Batch norms are folded first (:func:`fold_batchnorm`). Weights: int8 symmetric per output channel.
    Activations: 7-bit codes per tensor (:mod:`cnnkern.backends.reference.quant`), their ranges from running
    the float model over ``calibration_images`` (N, H, W, C): ``method='minmax'`` the extremes,
    ``'percentile'`` the ``percentile`` / ``100 - percentile`` points. Conv / dense accumulate in int32
    and requantize in their epilogue with the bias and a ReLU that follows; the last Dense gives float
    logits (then its softmax, if any). ``backend``: where the int8 model runs ('reference', 'cpp',
    'numba'; None: the fastest here). Supported layers: Conv2D, Dense, MaxPooling2D, Flatten, ReLU /
    Activation('relu'), Dropout, and batch norms that fold."""
    if method not in ("minmax", "percentile"):
        raise ValueError(f"method must be 'minmax' or 'percentile', got {method!r}")
    if not 50.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (50, 100], got {percentile}")
    images = np.asarray(calibration_images)
    if images.ndim < 2 or len(images) == 0:
        raise ValueError(
            f"calibration_images must hold at least one sample (N, ...), got shape {images.shape}"
        )
    folded = fold_batchnorm(model)  # _observe runs each layer on its own (the model's plan, which pairs a
    plan = _plan(folded)  # conv with its pool, is not used), so every layer's output is observed
    inp, obs = _observe(
        folded,
        images,
        {out for op, _, out in plan if op in ("conv", "dense")},
        method,
        percentile,
        batch_size,
    )
    scale, zero = in_scale, in_zero = activation_qparams(*inp.range())
    stages: list[dict[str, Any]] = []
    arrays: list[dict[str, np.ndarray]] = []
    flattened: tuple[int, ...] | None = None  # (C, H, W) flattened since the last weights, if any
    for op, i, out in plan:
        layer = folded.layers[i]
        stage: dict[str, Any] = {"op": op.split(":")[0], "name": layer.name}
        arr: dict[str, np.ndarray] = {}
        if isinstance(layer, (L.Conv2D, L.Dense)):
            kernel = to_numpy(layer.params["kernel"])
            if flattened is not None:  # the int8 images are channels-last: its columns in (H, W, C) order
                kernel = kernel.reshape(-1, *flattened).transpose(0, 2, 3, 1).reshape(kernel.shape[0], -1)
                flattened = None
            w, w_scale = quantize_weights(kernel)
            acc_scale = scale * w_scale
            bias = to_numpy(layer.params["bias"]) if "bias" in layer.params else None
            arr = {"kernel": w, "bias": quantize_bias(bias, acc_scale)}
            stage["x_zero"] = zero
            stage["units"] = int(w.shape[0])
            if op.startswith("logits"):
                stage["activation"] = op.split(":")[1] if ":" in op else layer.activation
                arr["scale"] = acc_scale.astype(np.float64)
            else:
                y_scale, y_zero = activation_qparams(*obs[out].range())
                arr["multiplier"], arr["shift"] = fixed_point(acc_scale / y_scale)
                stage.update(y_zero=y_zero, y_scale=y_scale, relu=out != i or layer.activation == "relu")
                if isinstance(layer, L.Conv2D):
                    prev = folded.layers[i - 1].output_shape if i else None
                    hw = prev[1:] if prev is not None else tuple(folded.input_shape or ())[:2]
                    stage.update(
                        kernel_size=list(layer.kernel_size),
                        stride=list(layer.strides),
                        padding=_conv_padding(layer, int(hw[0]), int(hw[1])),
                        dilation=list(layer.dilation_rate),
                        groups=layer.groups,
                    )
                scale, zero = y_scale, y_zero
        elif op == "maxpool":
            assert isinstance(layer, L.MaxPooling2D)
            g = layer._geom
            stage.update(
                kernel_size=list(g["kernel_size"]),
                stride=list(g["stride"]),
                padding=list(g["padding"]),
                ceil_mode=bool(g["ceil_mode"]),
            )
        elif op == "relu":
            stage["zero"] = zero
        elif op == "flatten":
            shape = tuple(folded.input_shape or ())
            before = folded.layers[i - 1].output_shape if i else (shape[2:] + shape[:2])
            flattened = tuple(before) if before is not None and len(before) == 3 else None
        stages.append(stage)
        arrays.append(arr)
    config = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "name": model.name,
        "input_shape": list(folded.input_shape or ()),
        "input_scale": in_scale,
        "input_zero": in_zero,
        "calibration": {"method": method, "percentile": percentile, "images": len(images)},
        "stages": stages,
    }
    return QuantizedModel(config, arrays, backend)
