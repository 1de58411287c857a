"""Reading a saved model (:func:`cnnkern.models.load_model`) as untrusted input.

Everything is checked BEFORE anything of the model's size is allocated: the JSON architecture (types,
ranges, required and unknown keys, layer classes), the shapes it implies (a shape-only build: no weight is
allocated, the per-sample activations and the parameter count are bounded), and each weight entry's
``.npy`` header (dtype, shape) read from the zip file without reading its data. Pickled (object) arrays are
refused unread. Every error is a ``ValueError`` that names the file and, where there is one, the layer.
What a config may hold (the limits and each layer class's keys and checks) is :mod:`cnnkern._modelschema`.
"""

from __future__ import annotations

import copy
import json
import zipfile
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np
from numpy.typing import DTypeLike

from . import layers as layers_mod
from ._modelschema import (
    _COMMON,
    ARCHITECTURE,
    MAX_ACTIVATION,
    MAX_ARCHITECTURE_CHARS,
    MAX_LAYERS,
    MAX_PARAMS,
    SCHEMA,
    _Bad,
    _choice,
    _input_shape,
    _name,
)
from ._typing import PathLike, Shape
from .initializers import Initializer

if TYPE_CHECKING:
    from .backends.base import Backend
    from .compress import QuantizedModel
    from .models import Model, Sequential

_BUILTIN = set(layers_mod.LAYERS.values())


def _layer(path: PathLike, i: int, entry: Any) -> layers_mod.Layer:
    """A layer object from architecture entry ``i``, its config checked first."""
    where = f"{path}: layer {i}"
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise ValueError(f'{where}: expected {{"class_name": ..., "config": {{...}}}}, got {_short(entry)}')
    cls = entry["class_name"]
    if cls not in SCHEMA:
        raise ValueError(f"{where}: unknown layer class {cls!r} (known: {', '.join(SCHEMA)})")
    cfg = entry.get("config")
    if not isinstance(cfg, dict):
        raise ValueError(f"{where} ({cls}): 'config' must be an object, got {_short(cfg)}")
    where = f"{where} ({cls} {cfg.get('name')!r})"
    required, checks = SCHEMA[cls]
    missing = [k for k in ("name", *required) if k not in cfg]
    if missing:
        raise ValueError(f"{where}: config lacks required key(s) {', '.join(map(repr, missing))}")
    unknown = sorted(set(cfg) - set(checks) - set(_COMMON))
    if unknown:
        raise ValueError(f"{where}: unknown config key(s) {', '.join(map(repr, unknown))}")
    for key, value in cfg.items():
        try:
            {**_COMMON, **checks}[key](value)
        except _Bad as exc:
            raise ValueError(f"{where}: {key} must be {exc}, got {_short(value)}") from None
    try:
        return layers_mod.from_config(cls, cfg)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def _short(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


class _ShapeContext(layers_mod.Context):
    """A Context for a shape-only build: weights are zero-stride views, nothing of their size is allocated.
    It has no backend: a layer's build (the one thing it is used for) needs none."""

    def __init__(self, dtype: DTypeLike) -> None:  # no super().__init__(): there is no backend
        self.xp, self.dtype = np, np.dtype(dtype)
        self.rng = np.random.default_rng(0)  # never the model's: a dry build must not advance it
        self.params = 0

    def asarray(self, a: Any) -> Any:
        return a


def _shape_only(ctx: _ShapeContext) -> Initializer:
    def init(shape: Shape, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
        n = 1
        for d in shape:
            n *= int(d)
        ctx.params += n
        if ctx.params > MAX_PARAMS:
            raise _Bad(f"the weights reach {ctx.params:,} elements, over the limit of {MAX_PARAMS:,}")
        return np.broadcast_to(np.zeros((), ctx.dtype), tuple(int(d) for d in shape))

    return init


def probe(
    layer: layers_mod.Layer, in_shape: Any, ctx: _ShapeContext | None = None
) -> tuple[Shape, dict[str, Shape]]:
    """The output shape and ``{weight name: shape}`` of ``layer`` on the per-sample input ``in_shape``
    (internal layout; a list of shapes for a merge layer), from a build of a copy of it: ``layer`` is left
    untouched. cnnkern's own layers build with shapes only (nothing of the weights' size is allocated; the
    weights counted in ``ctx`` against :data:`MAX_PARAMS`); a user's own Layer subclass builds for real on
    the reference backend (its _build may need more than shapes). Raises ``ValueError`` (build errors, an
    output over :data:`MAX_ACTIVATION` values per sample)."""
    ctx = ctx or _ShapeContext("float32")
    copy_ = copy.copy(layer)
    copy_.params, copy_.state, copy_.grads = {}, {}, {}
    build_ctx: layers_mod.Context = ctx
    if type(layer) in _BUILTIN:
        for attr in (
            "kernel_initializer",
            "bias_initializer",
            "depthwise_initializer",
            "pointwise_initializer",
        ):
            if hasattr(copy_, attr):
                setattr(copy_, attr, _shape_only(ctx))
    else:
        from . import backends

        build_ctx = layers_mod.Context(backends.resolve("reference"), "float32", np.random.default_rng(0))
    out = copy_.build(in_shape, build_ctx)
    n = 1
    for d in out:
        n *= int(d)
    if n > MAX_ACTIVATION:
        raise ValueError(
            f"outputs {n:,} values per sample (shape {tuple(out)}), over the limit of {MAX_ACTIVATION:,}"
        )
    weights = {k: tuple(a.shape) for d in (copy_.params, copy_.state) for k, a in d.items()}
    return tuple(out), weights


def dry_build(
    layer_list: Sequence[layers_mod.Layer], internal: Shape, dtype: DTypeLike, prefix: str = ""
) -> dict[str, Shape]:
    """Build copies of ``layer_list`` for the per-sample input ``internal`` (C, H, W) / (F,) with shapes only
    (no weight allocated): ``{weight key: shape}``. Per-sample activations over :data:`MAX_ACTIVATION` or
    weights over :data:`MAX_PARAMS` elements, and build errors, raise ``ValueError`` naming the layer."""
    ctx = _ShapeContext(dtype)
    out: dict[str, Shape] = {}
    for i, layer in enumerate(layer_list):
        if type(layer) not in _BUILTIN:  # a user's own Layer subclass: its _build may need more than shapes,
            return out  # so the checks stop here and its real build reports its own errors
        where = f"{prefix}layer {i} ({type(layer).__name__} {layer.name!r})"
        try:
            internal, weights = probe(layer, internal, ctx)
        except (ValueError, _Bad) as exc:
            raise ValueError(f"{where}: {exc}") from None
        for k, shape in weights.items():
            out[f"{i:03d}.{layer.name}/{k}"] = shape
    return out


def expected_weights(path: PathLike, cfg: dict[str, Any]) -> dict[str, Shape]:
    """``{weight key: shape}`` of the architecture ``cfg`` (already validated at the top level), from a
    shape-only build of its layers; errors name the file and the layer."""
    shape = tuple(cfg["input_shape"])
    internal = (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape
    built = [_layer(path, i, entry) for i, entry in enumerate(cfg["layers"])]
    return dry_build(built, internal, cfg["dtype"], prefix=f"{path}: ")


def check_architecture(path: PathLike, cfg: Any) -> None:
    """The top level of a saved architecture: format, name, dtype, input shape, layers list, compile."""
    from .saving import FORMAT, FORMAT_VERSION, FUNCTIONAL_FORMAT

    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: the architecture must be a JSON object, got {_short(cfg)}")
    if cfg.get("format") not in (FORMAT, FUNCTIONAL_FORMAT) or cfg.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format {cfg.get('format')!r} version {cfg.get('version')!r}, expected "
            f"{FORMAT!r} or {FUNCTIONAL_FORMAT!r} version {FORMAT_VERSION}"
        )
    missing = [k for k in ("name", "dtype", "input_shape", "layers") if k not in cfg]
    if missing:
        raise ValueError(f"{path}: the architecture lacks {', '.join(map(repr, missing))}")
    for key, check in (
        ("name", _name),
        ("dtype", _choice("float32", "float64")),
        ("input_shape", _input_shape),
    ):
        try:
            check(cfg[key])
        except _Bad as exc:
            raise ValueError(f"{path}: {key} must be {exc}, got {_short(cfg[key])}") from None
    layers = cfg["layers"]
    if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_LAYERS:
        raise ValueError(f"{path}: layers must be a list of 1 to {MAX_LAYERS} layers, got {_short(layers)}")
    names = [
        e.get("config", {}).get("name")
        for e in layers
        if isinstance(e, dict) and isinstance(e.get("config"), dict)
    ]
    dup = sorted({n for n in names if isinstance(n, str) and names.count(n) > 1})
    if dup:
        raise ValueError(f"{path}: layer name(s) {', '.join(map(repr, dup))} used more than once")
    c = cfg.get("compile")
    if c is not None and (not isinstance(c, dict) or set(c) != {"optimizer", "loss", "metrics"}):
        raise ValueError(f"{path}: compile must be null or {{optimizer, loss, metrics}}, got {_short(c)}")


@overload
def read_entries(path: PathLike, expected: None, dtype: None) -> tuple[str, dict[str, np.ndarray]]: ...
@overload
def read_entries(
    path: PathLike, expected: dict[str, Shape], dtype: DTypeLike | dict[str, str]
) -> tuple[None, dict[str, np.ndarray]]: ...
def read_entries(
    path: PathLike, expected: dict[str, Shape] | None, dtype: DTypeLike | dict[str, str] | None
) -> tuple[str | None, dict[str, np.ndarray]]:
    """``(architecture JSON text, {key: array})`` read from the npz at ``path``; with ``expected`` None only
    the architecture is read. Weight headers are checked against ``expected`` and ``dtype`` first (a float
    dtype for every entry, or ``{key: dtype}``: exactly that dtype for each, as an int8 model has)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not a saved cnnkern model ({type(exc).__name__}: {exc})") from None
    with zf:
        members = {}
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                raise ValueError(
                    f"{path}: entry {info.filename!r} is not a .npy array; not a saved cnnkern model"
                )
            members[info.filename[:-4]] = info
        if ARCHITECTURE not in members:
            raise ValueError(f"{path}: not a saved cnnkern model (no {ARCHITECTURE} entry)")
        if expected is None:
            arch = _read(zf, path, members[ARCHITECTURE], ARCHITECTURE, None, None)
            return str(arch[()]), {}
        keys = sorted(k for k in members if k != ARCHITECTURE)
        missing = sorted(set(expected) - set(keys))
        extra = sorted(set(keys) - set(expected))
        if missing or extra:
            raise ValueError(
                f"{path}: the weights do not match the architecture: "
                + "; ".join(
                    part
                    for part in (
                        f"missing {', '.join(missing)}" if missing else "",
                        f"not in the architecture: {', '.join(extra)}" if extra else "",
                    )
                    if part
                )
            )
        per_key: dict[str, Any] = dict(dtype) if isinstance(dtype, dict) else dict.fromkeys(keys, dtype)
        dtypes = {k: np.dtype(per_key[k]) for k in keys}
        arrays = {
            k: _read(zf, path, members[k], k, expected[k], dtypes[k], isinstance(dtype, dict)) for k in keys
        }
    return None, arrays


def _read(
    zf: zipfile.ZipFile,
    path: PathLike,
    info: zipfile.ZipInfo,
    key: str,
    shape: Shape | None,
    dtype: np.dtype[Any] | None,
    exact: bool = False,
) -> np.ndarray:
    fmt = np.lib.format
    where = f"{path}: entry {key}" + (f" (layer {key.split('/')[0]})" if shape is not None else "")
    try:
        with zf.open(info) as f:
            version = fmt.read_magic(f)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            got_shape, _, got = read_header(f)
            if got.hasobject:
                raise ValueError(f"{where}: holds Python objects (a pickle), which are never loaded")
            if shape is None:  # the architecture: one string
                if got.kind != "U" or got_shape != () or got.itemsize // 4 > MAX_ARCHITECTURE_CHARS:
                    raise ValueError(f"{where}: expected one JSON string, got {got} {got_shape}")
            else:
                assert dtype is not None  # given with every weight's shape
                if exact and got != dtype:
                    raise ValueError(f"{where}: dtype {got}, expected {dtype.name}")
                if not exact and (got.kind != "f" or got.itemsize != dtype.itemsize):
                    raise ValueError(f"{where}: dtype {got}, expected {dtype.name} (the model's dtype)")
                if tuple(got_shape) != tuple(shape):
                    raise ValueError(
                        f"{where}: shape {tuple(got_shape)}, the architecture needs {tuple(shape)}"
                    )
        with zf.open(info) as f:
            return fmt.read_array(f, allow_pickle=False)
    except ValueError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{where}: unreadable ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{where}: corrupt ({type(exc).__name__}: {exc})") from None


def sequential_of(cfg: dict[str, Any], backend: str | Backend | None) -> Sequential:
    """The (unbuilt) Sequential model of a checked architecture config."""
    from .models import Sequential

    return Sequential(
        [layers_mod.from_config(e["class_name"], e["config"]) for e in cfg["layers"]],
        name=cfg["name"],
        backend=backend,
        dtype=cfg["dtype"],
    )


def load(path: PathLike, backend: str | Backend | None = None) -> Model | QuantizedModel:
    """:func:`cnnkern.models.load_model` (documented there)."""
    from .saving import FUNCTIONAL_FORMAT

    text, _ = read_entries(path, None, None)
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt architecture entry ({exc})") from None
    if isinstance(cfg, dict) and cfg.get("format") == "cnnkern-quantized":  # an int8 model (cnnkern.compress)
        from .compress import qfile

        return qfile.load(path, cfg, backend if backend is None or isinstance(backend, str) else backend.name)
    check_architecture(path, cfg)
    model: Model
    if cfg["format"] == FUNCTIONAL_FORMAT:
        from ._functionalfile import model_and_weights

        model, expected = model_and_weights(path, cfg, backend)
    else:
        expected = expected_weights(path, cfg)
    _, arrays = read_entries(path, expected, cfg["dtype"])
    try:
        if cfg["format"] != FUNCTIONAL_FORMAT:
            model = sequential_of(cfg, backend)
        model.build(tuple(cfg["input_shape"]))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    model.set_weights([arrays[key] for key, _, _, _ in model._weight_items()])
    c = cfg.get("compile")
    if c:
        try:
            model.compile(optimizer=c["optimizer"], loss=c["loss"], metrics=c["metrics"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: bad compile settings ({exc})") from None
    return model
