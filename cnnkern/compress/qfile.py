"""Reading a saved int8 model (:func:`cnnkern.models.load_model` dispatches here on its format) as
untrusted input: the stages are checked (ops, keys, types, ranges) and walked for every array's shape
BEFORE any weight is read, then each entry's .npy header (its exact dtype and shape) by
:func:`cnnkern._modelfile.read_entries`. Errors are ``ValueError`` naming the file and the stage."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .. import shapes
from .._modelfile import read_entries
from .._modelschema import MAX_ACTIVATION, MAX_DIM, MAX_KERNEL, MAX_PARAMS
from .._typing import PathLike
from ..backends.reference.quant import ACT_MAX, MAX_BIAS, MAX_REDUCTION, W_MAX
from .qmodel import ARRAYS, FORMAT, FORMAT_VERSION, QuantizedModel

_LAYER = {"units", "x_zero"}
_REQUANT = {"y_zero", "y_scale", "relu"}
_KEYS: dict[str, set[str]] = {
    "conv": _LAYER | _REQUANT | {"kernel_size", "stride", "padding", "dilation", "groups"},
    "dense": _LAYER | _REQUANT,
    "logits": _LAYER | {"activation"},
    "maxpool": {"kernel_size", "stride", "padding", "ceil_mode"},
    "flatten": set(),
    "relu": {"zero"},
}
_TOP = {"format", "version", "name", "input_shape", "input_scale", "input_zero", "calibration", "stages"}


def _int(v: Any, lo: int, hi: int, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{what} must be an int in [{lo}, {hi}], got {str(v)[:40]}")
    return v


def _ints(v: Any, n: int, lo: int, hi: int, what: str) -> list[int]:
    if not isinstance(v, list) or len(v) != n:
        raise ValueError(f"{what} must be a list of {n} ints, got {str(v)[:40]}")
    return [_int(i, lo, hi, what) for i in v]


def _positive(v: Any, what: str) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1e30:
        raise ValueError(f"{what} must be a positive number, got {str(v)[:40]}")


def _bool(v: Any, what: str) -> None:
    if not isinstance(v, bool):
        raise ValueError(f"{what} must be true or false, got {str(v)[:40]}")


def _stage(st: dict[str, Any], cur: tuple[int, ...]) -> tuple[tuple[int, ...], dict[str, tuple[int, ...]]]:
    """(the per-sample output shape, {array: shape}) of one stage on input ``cur``, its settings checked."""
    op = st["op"]
    if op in ("conv", "dense", "logits"):
        _int(st["x_zero"], 0, ACT_MAX, "x_zero")
        units = _int(st["units"], 1, MAX_DIM, "units")
    if op in ("conv", "dense"):
        _int(st["y_zero"], 0, ACT_MAX, "y_zero")
        _positive(st["y_scale"], "y_scale")
        _bool(st["relu"], "relu")
    if op in ("conv", "maxpool") and len(cur) != 3:
        raise ValueError(f"needs image input, got per-sample shape {cur}")
    if op in ("dense", "logits") and len(cur) != 1:
        raise ValueError(f"needs flat input, got per-sample shape {cur}")
    if op == "conv":
        c, h, w = cur
        r, s = _ints(st["kernel_size"], 2, 1, MAX_KERNEL, "kernel_size")
        stride = _ints(st["stride"], 2, 1, MAX_KERNEL, "stride")
        t, b, le, ri = _ints(st["padding"], 4, 0, MAX_KERNEL, "padding")
        dil = _ints(st["dilation"], 2, 1, MAX_KERNEL, "dilation")
        g = _int(st["groups"], 1, c, "groups")
        if c % g or units % g:
            raise ValueError(f"groups={g} must divide the {c} input channels and the {units} filters")
        if c // g * r * s > MAX_REDUCTION:
            raise ValueError(f"the reduction length {c // g * r * s} exceeds {MAX_REDUCTION}")
        p = shapes.conv_out(h, r, stride[0], t, b, dil[0])
        q = shapes.conv_out(w, s, stride[1], le, ri, dil[1])
        kernel: tuple[int, ...] = (units, c // g, r, s)
        cur = (units, p, q)
    elif op == "maxpool":
        ks = _ints(st["kernel_size"], 2, 1, MAX_KERNEL, "kernel_size")
        stp = _ints(st["stride"], 2, 1, MAX_KERNEL, "stride")
        pp = _ints(st["padding"], 2, 0, MAX_KERNEL, "padding")
        if pp[0] > ks[0] // 2 or pp[1] > ks[1] // 2:
            raise ValueError(f"padding {pp} must be <= kernel_size // 2")
        _bool(st["ceil_mode"], "ceil_mode")
        cur = (cur[0],) + tuple(
            shapes.pool_out(n, k, s, p, 1, st["ceil_mode"]) for n, k, s, p in zip(cur[1:], ks, stp, pp)
        )
    elif op == "flatten":
        cur = (int(np.prod(cur)),)
    elif op == "relu":
        _int(st["zero"], 0, ACT_MAX, "zero")
    elif op in ("dense", "logits"):
        if cur[0] > MAX_REDUCTION:
            raise ValueError(f"the reduction length {cur[0]} exceeds {MAX_REDUCTION}")
        kernel = (units, cur[0])
        cur = (units,)
        if op == "logits" and st["activation"] not in ("linear", "relu", "softmax"):
            raise ValueError(f"activation must be 'linear', 'relu' or 'softmax', got {st['activation']!r}")
    if min(cur) < 1 or int(np.prod(cur)) > MAX_ACTIVATION:
        raise ValueError(f"the per-sample output shape {cur} is empty or over the limit")
    arrays = {key: kernel if key == "kernel" else (units,) for key in ARRAYS[op]}
    return cur, arrays


def expected(cfg: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
    """{entry key: (shape, dtype)} of the architecture ``cfg``, every setting checked."""
    if set(cfg) != _TOP:
        raise ValueError(f"the architecture has keys {sorted(cfg)}, expected {sorted(_TOP)}")
    if not isinstance(cfg["name"], str):
        raise ValueError("name must be a string")
    shape = cfg["input_shape"]
    if not isinstance(shape, list) or len(shape) not in (1, 3):
        raise ValueError(f"input_shape must be [H, W, C] or [features], got {str(shape)[:40]}")
    _ints(shape, len(shape), 1, MAX_DIM, "input_shape")
    _positive(cfg["input_scale"], "input_scale")
    _int(cfg["input_zero"], 0, ACT_MAX, "input_zero")
    stages = cfg["stages"]
    if not isinstance(stages, list) or not 1 <= len(stages) <= 10_000:
        raise ValueError("stages must be a list of 1 to 10000 stages")
    cur: tuple[int, ...] = (shape[2], shape[0], shape[1]) if len(shape) == 3 else (shape[0],)
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    params = 0
    for i, st in enumerate(stages):
        if not isinstance(st, dict) or st.get("op") not in _KEYS or not isinstance(st.get("name"), str):
            raise ValueError(
                f"stage {i}: expected {{op: one of {', '.join(_KEYS)}, name, ...}}, got {str(st)[:80]}"
            )
        where = f"stage {i} ({st['op']} {st['name'][:60]!r})"
        if not st["name"] or "/" in st["name"] or len(st["name"]) > 256:
            raise ValueError(f"{where}: the name must be 1 to 256 characters without '/'")
        if set(st) != _KEYS[st["op"]] | {"op", "name"}:
            raise ValueError(
                f"{where}: keys {sorted(st)}, expected {sorted(_KEYS[st['op']] | {'op', 'name'})}"
            )
        if (st["op"] == "logits") != (i == len(stages) - 1):
            raise ValueError(f"{where}: the last stage, and only it, must be 'logits'")
        try:
            cur, arrays = _stage(st, cur)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        for key, a_shape in arrays.items():
            params += int(np.prod(a_shape))
            out[f"{i:03d}.{st['name']}/{key}"] = (a_shape, ARRAYS[st["op"]][key])
        if params > MAX_PARAMS:
            raise ValueError(
                f"{where}: the weights reach {params:,} elements, over the limit of {MAX_PARAMS:,}"
            )
    return out


def is_quantized(path: PathLike) -> bool:
    """Whether ``path`` holds a saved int8 model (False for a float one or an unreadable file, which
    :func:`cnnkern.models.load_model` then reports)."""
    try:
        text, _ = read_entries(path, None, None)
        cfg = json.loads(text)
    except (ValueError, OSError):
        return False
    return isinstance(cfg, dict) and cfg.get("format") == FORMAT


def _bad_values(arr: dict[str, np.ndarray]) -> str:
    """What in one stage's arrays is outside the integer formats ('' if nothing)."""
    if "kernel" in arr and arr["kernel"].size and int(arr["kernel"].min()) < -W_MAX:
        return f"the kernel holds -128 (int8 weights are in [-{W_MAX}, {W_MAX}])"
    if "bias" in arr and arr["bias"].size and int(np.abs(arr["bias"].astype(np.int64)).max()) > MAX_BIAS:
        return "the bias is outside [-2**30, 2**30]"
    if "multiplier" in arr:
        m, s = arr["multiplier"].astype(np.int64), arr["shift"].astype(np.int64)
        if np.any((m != 0) & ((m < 1 << 30) | (m >= 1 << 31))) or np.any((s < 1) | (s > 62)):
            return "a multiplier outside {0} U [2**30, 2**31) or a shift outside [1, 62]"
    if "scale" in arr and not np.all(np.isfinite(arr["scale"])):
        return "the logits scale holds NaN or Inf"
    return ""


def load(path: PathLike, cfg: Any, backend: str | None = None) -> QuantizedModel:
    """The int8 model saved at ``path`` whose architecture JSON is ``cfg``."""
    if cfg.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format {FORMAT!r} version {cfg.get('version')!r}, expected {FORMAT_VERSION}"
        )
    try:
        want = expected(cfg)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    _, arrays = read_entries(path, {k: s for k, (s, _) in want.items()}, {k: d for k, (_, d) in want.items()})
    per_stage = [
        {key: arrays[f"{i:03d}.{st['name']}/{key}"] for key in ARRAYS[st["op"]]}
        for i, st in enumerate(cfg["stages"])
    ]
    for i, arr in enumerate(per_stage):
        bad = _bad_values(arr)
        if bad:
            raise ValueError(f"{path}: stage {i}: {bad}")
    return QuantizedModel(cfg, per_stage, backend)
