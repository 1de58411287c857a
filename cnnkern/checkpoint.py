"""Training checkpoints: one ``.npz`` file (no pickles) from which ``fit`` resumes exactly where it was.

The format (version 1; docs/checkpoints.md describes it for readers in other tools):

* ``__checkpoint__``: a JSON string: ``format`` ("cnnkern-checkpoint"), ``version`` (1), ``model`` (the
  model's ``get_config()``: architecture, dtype, compile settings incl. the optimizer's hyperparameters),
  ``fit`` (samples, batch size, steps per epoch, epochs, shuffle, CRC-32 of the training data as the model
  sees it), ``progress`` (``epoch``: the epoch under way, 0-based; ``step``: the steps of it already applied;
  ``stop_training``), ``rng`` (the model generator's ``bit_generator.state``: shuffling and dropout),
  ``optimizer`` (``iterations``, the current ``learning_rate``) and ``callbacks`` (class name and JSON
  state of History and of each callback with state, in the order of the callbacks list).
* ``weights/<index>.<layer>/<name>``: every parameter and running statistic, the keys of a saved model.
* ``optimizer/<layer index>/<parameter>/<slot>``: Adam's ``m`` / ``v``, SGD's ``velocity``.
* ``order``: the epoch's permutation of the samples (when shuffling), so a mid-epoch resume runs the same
  batches; ``loss_sum`` / ``correct``: the epoch's running sums (0-d arrays of their own dtype).
* ``callbacks/<i>/<field>`` or ``callbacks/<i>/<field>/<j>``: array parts of callback state (e.g.
  EarlyStopping's best weights), referenced from the JSON as ``{"$array": key}`` / ``{"$arrays": [keys]}``.

Files are written with :func:`cnnkern._io.atomic_write`: a kill during a write leaves the previous one.
:func:`write` / :func:`read` are the format; ModelCheckpoint-style callbacks build on them.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._io import atomic_save
from ._typing import BackendArray, PathLike
from .errors import CheckpointError
from .layers import to_numpy

if TYPE_CHECKING:
    from .callbacks import Callback
    from .models import Model

FORMAT = "cnnkern-checkpoint"
VERSION = 1
META = "__checkpoint__"

__all__ = ["FORMAT", "VERSION", "TrainState", "data_fingerprint", "read", "restore", "write"]


@dataclass
class TrainState:
    """Where ``fit`` is: ``epoch`` under way (0-based), ``step`` steps of it applied, the epoch's sample
    ``order`` (None without shuffling or between epochs), its running ``loss_sum`` / ``correct``."""

    epoch: int = 0
    step: int = 0
    order: BackendArray | None = None
    loss_sum: BackendArray | float = 0.0  # a backend scalar while an epoch runs
    correct: BackendArray | float = 0.0
    stop_training: bool = False


def data_fingerprint(*arrays: BackendArray) -> int:
    """CRC-32 over the bytes of ``arrays`` (backend arrays; copied to the host if they are not there)."""
    crc = 0
    for a in arrays:
        a = np.ascontiguousarray(to_numpy(a))
        crc = zlib.crc32(a.reshape(-1).view(np.uint8).data, crc)
    return crc


def _config(model: Model) -> Any:
    """The model's config as JSON values, with the optimizer's learning rate as constructed (a callback such
    as ReduceLROnPlateau changes the current one, which the optimizer's state carries)."""
    config = json.loads(json.dumps(model.get_config()))
    opt = (config.get("compile") or {}).get("optimizer")
    if opt is not None and model.optimizer.schedule is None:
        opt["learning_rate"] = model.optimizer._initial_lr
    return config


def _split_state(i: int, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """JSON part of a callback's state; its arrays go to ``arrays`` under ``callbacks/<i>/...``."""
    out: dict[str, Any] = {}
    for key, v in state.items():
        name = f"callbacks/{i}/{key}"
        if isinstance(v, np.ndarray):
            arrays[name] = v
            out[key] = {"$array": name}
        elif isinstance(v, list) and v and all(isinstance(a, np.ndarray) for a in v):
            out[key] = {"$arrays": [f"{name}/{j}" for j in range(len(v))]}
            arrays.update({f"{name}/{j}": a for j, a in enumerate(v)})
        else:
            out[key] = v
    return out


def _join_state(state: dict[str, Any], arrays: dict[str, np.ndarray], path: PathLike) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in state.items():
        if isinstance(v, dict) and "$array" in v:
            out[key] = _array(arrays, v["$array"], path)
        elif isinstance(v, dict) and "$arrays" in v:
            out[key] = [_array(arrays, k, path) for k in v["$arrays"]]
        else:
            out[key] = v
    return out


def _array(arrays: dict[str, np.ndarray], key: str, path: PathLike) -> np.ndarray:
    if key not in arrays:
        raise CheckpointError(f"{path}: entry {key!r} is missing; the file is incomplete or corrupt")
    return arrays[key]


def _stateful(callbacks: Sequence[Callback]) -> list[tuple[Callback, dict[str, Any]]]:
    return [(cb, s) for cb in callbacks if (s := cb.get_state()) is not None]


def write(
    path: PathLike, model: Model, state: TrainState, callbacks: Sequence[Callback], fit: dict[str, Any]
) -> None:
    """Write a checkpoint of ``model`` training at ``state`` to ``path`` (atomically)."""
    arrays = {f"weights/{key}": to_numpy(d[k]) for key, _, d, k in model._weight_items()}
    opt = model.optimizer.get_state()
    for (i, k), slots in opt["slots"].items():
        for name, a in slots.items():
            arrays[f"optimizer/{i:03d}/{k}/{name}"] = a
    if state.order is not None:
        arrays["order"] = to_numpy(state.order)
    arrays["loss_sum"] = np.asarray(to_numpy(state.loss_sum))
    arrays["correct"] = np.asarray(to_numpy(state.correct))
    rng = model.rng.bit_generator
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": _config(model),
        "fit": fit,
        "progress": {"epoch": state.epoch, "step": state.step, "stop_training": bool(state.stop_training)},
        "rng": {"bit_generator": type(rng).__name__, "state": rng.state},
        "optimizer": {"iterations": opt["iterations"], "learning_rate": opt["learning_rate"]},
        "callbacks": [
            {"class": type(cb).__name__, "state": _split_state(i, s, arrays)}
            for i, (cb, s) in enumerate(_stateful(callbacks))
        ],
    }
    arrays[META] = np.array(json.dumps(meta))
    # numpy's stub types **kwds against savez's own allow_pickle keyword, hence the ignore
    atomic_save(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def read(path: PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of the checkpoint at ``path``; :class:`CheckpointError` naming the file if it is not
    one (pickled arrays are refused, never loaded)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a cnnkern checkpoint ({type(exc).__name__}: {exc})") from None
    if META not in arrays:
        raise CheckpointError(f"{path}: not a cnnkern checkpoint (no {META} entry)")
    try:
        meta = json.loads(str(arrays.pop(META)))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt {META} entry ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        got = (meta.get("format"), meta.get("version")) if isinstance(meta, dict) else meta
        raise CheckpointError(f"{path}: format {got}, expected {FORMAT!r} version {VERSION}")
    for key in ("model", "fit", "progress", "rng", "optimizer", "callbacks"):
        if key not in meta:
            raise CheckpointError(f"{path}: the {META} entry lacks {key!r}; the file is corrupt")
    return meta, arrays


def _diff(a: Any, b: Any, where: str = "") -> str | None:
    """The first place where two JSON values differ, as 'key.path: a != b'."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            d = _diff(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            d = _diff(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{where}: checkpoint has {a!r}, this run has {b!r}"


def restore(
    path: PathLike, model: Model, state: TrainState, callbacks: Sequence[Callback], fit: dict[str, Any]
) -> None:
    """Load the checkpoint at ``path`` into ``model`` (weights, optimizer state, generator), ``state`` and
    ``callbacks``, after checking that it was written for this model and this training data."""
    meta, arrays = read(path)
    d = _diff(meta["model"], _config(model))
    if d:
        raise CheckpointError(f"{path}: written for another model or compile settings ({d})")
    want = {k: v for k, v in fit.items() if k != "epochs"}  # more (or fewer) epochs may be asked for
    d = _diff({k: meta["fit"].get(k) for k in want}, want)
    if d:
        raise CheckpointError(f"{path}: written for other training data or fit arguments ({d})")
    keys = [key for key, _, _, _ in model._weight_items()]
    weights = [_array(arrays, f"weights/{key}", path) for key in keys]
    slots: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for name, a in arrays.items():
        if name.startswith("optimizer/"):
            _, i, k, slot = name.split("/", 3)
            slots.setdefault((int(i), k), {})[slot] = a
    saved = [(type(cb).__name__, s) for cb, s in _stateful(callbacks)]
    classes = [c["class"] for c in meta["callbacks"]]
    if classes != [c for c, _ in saved]:
        raise CheckpointError(
            f"{path}: holds the state of callbacks {classes}, but this fit has {[c for c, _ in saved]}; "
            f"pass the same callbacks in the same order to resume"
        )
    rng = model.rng.bit_generator
    if meta["rng"].get("bit_generator") != type(rng).__name__:
        raise CheckpointError(
            f"{path}: generator {meta['rng'].get('bit_generator')}, the model uses {type(rng).__name__}"
        )
    # every check passed: now change the model
    model.set_weights(weights)
    model.optimizer.set_state({**meta["optimizer"], "slots": slots}, model._ctx)
    rng.state = meta["rng"]["state"]
    p = meta["progress"]
    state.epoch, state.step, state.stop_training = int(p["epoch"]), int(p["step"]), bool(p["stop_training"])
    xp = model._ctx.xp
    state.order = xp.asarray(arrays["order"]) if "order" in arrays else None
    # the running sums go back as NumPy scalars of their dtype (the arithmetic of the uninterrupted run), or
    # as 0-d arrays on a GPU backend
    sums = [_array(arrays, k, path)[()] for k in ("loss_sum", "correct")]
    state.loss_sum, state.correct = sums if xp is np else [xp.asarray(v) for v in sums]
    for (cb, _), c in zip(_stateful(callbacks), meta["callbacks"]):
        cb.set_state(_join_state(c["state"], arrays, path))
