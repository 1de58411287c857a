"""The int8 inference model :class:`QuantizedModel`: a list of stages (quantized conv / dense with the
requantization fused, max pool and ReLU on the codes, flatten, and a final dense giving float logits) run
by one backend's quantized kernels (:mod:`cnnkern.compress.kernels`)."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .. import nonfinite
from .._io import atomic_save
from .._typing import PathLike
from . import kernels
from .qparams import quantize_input

FORMAT = "cnnkern-quantized"
FORMAT_VERSION = 1
# the arrays each stage op holds, with their dtypes
ARRAYS: dict[str, dict[str, str]] = {
    "conv": {"kernel": "int8", "bias": "int32", "multiplier": "int32", "shift": "int32"},
    "dense": {"kernel": "int8", "bias": "int32", "multiplier": "int32", "shift": "int32"},
    "logits": {"kernel": "int8", "bias": "int32", "scale": "float64"},
    "maxpool": {},
    "flatten": {},
    "relu": {},
}


class QuantizedModel:
    """An inference-only int8 model made by :func:`cnnkern.compress.quantize` or loaded with
    :func:`cnnkern.models.load_model`: ``predict`` and ``evaluate`` as :class:`cnnkern.models.Sequential`'s,
    ``save`` to one .npz. ``backend``: 'reference', 'cpp' or 'numba' (their int8 kernels agree exactly)."""

    def __init__(
        self, config: dict[str, Any], arrays: list[dict[str, np.ndarray]], backend: str | None = None
    ):
        self.config = config
        self.stages: list[dict[str, Any]] = config["stages"]
        self.arrays = arrays
        self.name: str = config["name"]
        self.input_shape: tuple[int, ...] = tuple(config["input_shape"])
        self.input_scale = float(config["input_scale"])
        self.input_zero = int(config["input_zero"])
        self.final_activation: str = self.stages[-1]["activation"]
        self.set_backend(backend)

    def set_backend(self, backend: str | None) -> None:
        """Run on ``backend`` (None: the fastest available of cpp, numba, reference)."""
        self.kernels = kernels.get(backend)
        self.backend_name = self.kernels.name

    # --- running -----------------------------------------------------------------------------------------
    def _check(self, x: Any) -> np.ndarray:
        """``x`` as an array, its shape, dtype and finiteness checked (as Sequential checks its input)."""
        x = np.asarray(x)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"x must have shape (N, {', '.join(map(str, self.input_shape))}), got {x.shape}")
        if x.dtype.kind not in "biuf":
            raise TypeError(f"x must hold numbers, got dtype {x.dtype.name}")
        if x.dtype.kind == "f":
            nonfinite.check_inputs(x, "x")
        return x

    def _codes(self, x: np.ndarray) -> np.ndarray:
        """A checked batch (N, H, W, C) -> the input codes, channels-last as every int8 kernel takes them."""
        if x.dtype == np.float32:  # (checked finite) the backend's kernel
            return self.kernels.quantize_input_q8(x, scale=self.input_scale, zero=self.input_zero)
        return quantize_input(x, self.input_scale, self.input_zero)  # float64 / integers: the spec itself

    def _fused_pool(self, i: int) -> tuple[int, int] | None:
        """The window of the max pool after conv stage ``i`` when conv2d_q8_pool_forward can run both (window
        = stride, no padding, floor mode: the max of each window of conv outputs), else None."""
        if i + 1 >= len(self.stages):
            return None
        pool = self.stages[i + 1]
        if pool["op"] != "maxpool" or pool["ceil_mode"] or any(pool["padding"]):
            return None
        window = tuple(int(v) for v in pool["kernel_size"])
        return (window[0], window[1]) if window == tuple(int(v) for v in pool["stride"]) else None

    def _logits(self, q: np.ndarray) -> np.ndarray:
        k = self.kernels
        skip = -1  # a max pool stage run inside the conv before it
        for i, (stage, arr) in enumerate(zip(self.stages, self.arrays)):
            op = stage["op"]
            if i == skip:
                continue
            if op in ("conv", "dense"):
                common = dict(x_zero=stage["x_zero"], y_zero=stage["y_zero"], relu=stage["relu"])
                args = (q, arr["kernel"], arr["bias"], arr["multiplier"], arr["shift"])
                if op == "conv":
                    geometry = {key: stage[key] for key in ("stride", "padding", "dilation", "groups")}
                    pool = self._fused_pool(i)
                    if pool is not None:
                        skip = i + 1
                        q = k.conv2d_q8_pool_forward(*args, **common, **geometry, pool=pool)
                    else:
                        q = k.conv2d_q8_forward(*args, **common, **geometry)
                else:
                    q = k.dense_q8_forward(*args, **common)
            elif op == "maxpool":
                q = k.maxpool2d_q8_forward(
                    q,
                    kernel_size=stage["kernel_size"],
                    stride=stage["stride"],
                    padding=stage["padding"],
                    ceil_mode=stage["ceil_mode"],
                )
            elif op == "relu":
                q = np.maximum(q, np.uint8(stage["zero"]))
            elif op == "flatten":
                q = np.ascontiguousarray(q.reshape(q.shape[0], -1))
            else:  # logits: the last stage
                acc = k.dense_q8_acc(q, arr["kernel"], arr["bias"], x_zero=stage["x_zero"])
                out = (acc * arr["scale"]).astype(np.float32)
                return np.maximum(out, 0) if stage["activation"] == "relu" else out
        raise AssertionError("the last stage is always 'logits'")

    def _outputs(self, logits: np.ndarray) -> np.ndarray:
        if self.final_activation != "softmax":
            return logits
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x: ArrayLike, batch_size: int | None = None, verbose: int = 0) -> np.ndarray:
        """Float32 outputs (probabilities after a final softmax, else logits), as Sequential.predict."""
        x = self._check(x)
        bs = 32 if batch_size is None else int(batch_size)
        outs = [self._outputs(self._logits(self._codes(x[lo : lo + bs]))) for lo in range(0, len(x), bs)]
        if verbose:
            print(f"predicted {len(x)} samples")
        n_out = self.arrays[-1]["kernel"].shape[0]
        return np.concatenate(outs) if outs else np.empty((0, n_out), np.float32)

    def evaluate(
        self,
        x: ArrayLike,
        y: ArrayLike,
        batch_size: int | None = None,
        verbose: int = 0,
        return_dict: bool = False,
    ) -> list[float] | dict[str, float]:
        """``[loss, accuracy]``: the mean sparse categorical cross-entropy of the float logits and the
        accuracy (a dict with ``return_dict``)."""
        x, labels = self._check(x), np.asarray(y).reshape(-1)
        if len(x) == 0 or len(labels) != len(x):
            raise ValueError(
                f"x and y must hold the same number (> 0) of samples, got {len(x)} and {len(labels)}"
            )
        bs = 32 if batch_size is None else int(batch_size)
        start = time.perf_counter()
        loss = correct = 0.0
        for lo in range(0, len(x), bs):
            z = self._logits(self._codes(x[lo : lo + bs])).astype(np.float64)
            yb = labels[lo : lo + bs].astype(np.int64)
            z = z - z.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            loss -= float(logp[np.arange(len(yb)), yb].sum())
            correct += float((z.argmax(axis=1) == yb).sum())
        result = {"loss": loss / len(x), "accuracy": correct / len(x)}
        if verbose:
            print(
                f"{len(x)} samples - {time.perf_counter() - start:.1f}s - loss: {result['loss']:.4f} - "
                f"accuracy: {result['accuracy']:.4f}"
            )
        return result if return_dict else [result["loss"], result["accuracy"]]

    def summary(self, print_fn: Any = print) -> None:
        """One line per stage: its op, name and the weight shape."""
        lines = [f'Quantized model "{self.name}" (int8, backend: {self.backend_name})']
        for stage, arr in zip(self.stages, self.arrays):
            shape = tuple(arr["kernel"].shape) if "kernel" in arr else ""
            lines.append(f"  {stage['op']:<8} {stage['name']:<24} {shape}")
        print_fn("\n".join(lines))

    def export_onnx(self, path: PathLike, *, opset: int = 17, exact: bool = False) -> None:
        """The int8 model as an ONNX file of standard quantized operators (input (N, H, W, C) float32, as
        ``predict`` takes it): QLinearConv, which requantizes in float32 (a code can differ by one), or with
        ``exact=True`` ConvInteger / MatMulInteger and cnnkern's requantization in float64 (outputs equal to
        ``predict``'s). See :mod:`cnnkern.compress.onnx_int8`. Needs ``pip install "cnnkern[onnx]"``."""
        from .onnx_int8 import export_int8_onnx

        export_int8_onnx(self, path, opset=opset, exact=exact)

    # --- saving ------------------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return self.config

    def save(self, path: PathLike) -> None:
        """Architecture and int8 weights to ONE .npz file, written atomically;
        :func:`cnnkern.models.load_model` reads it back."""
        out: dict[str, np.ndarray] = {}
        for i, (stage, arr) in enumerate(zip(self.stages, self.arrays)):
            for key, a in arr.items():
                out[f"{i:03d}.{stage['name']}/{key}"] = a
        out["__architecture__"] = np.array(json.dumps(self.config))
        atomic_save(path, lambda f: np.savez(f, **out))  # type: ignore[arg-type]
