"""The start-of-training check that every rank runs the same job: a digest per field is gathered (with the
link's deadline), and where they differ every rank raises the same :class:`DistributedConfigError` naming
the field and each rank's value."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from ..layers import to_numpy
from ._link import DistributedConfigError, Link

HINTS = {
    "generator": "create the model with the same seed= on every rank",
    "weights": "create the model with the same seed= (or load the same weights) on every rank",
    "data": "give every rank the same x and y (each rank takes its own rows of every batch)",
    "start epoch": "a BackupAndRestore checkpoint must be readable by every rank: a shared file system",
    "start step": "a BackupAndRestore checkpoint must be readable by every rank: a shared file system",
}


def _crc(arrays: Any) -> str:
    h = hashlib.blake2b(digest_size=8)
    for a in arrays:
        a = np.ascontiguousarray(to_numpy(a))
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def data_digest(*arrays: Any) -> str:
    """A digest of the data's shapes, dtypes and bytes."""
    return _crc(arrays)


def describe(model: Any, fit_args: dict[str, Any], strategy: dict[str, Any]) -> dict[str, str]:
    """The fields compared across ranks, as short strings (hashes for the bulky ones)."""
    opt = model.optimizer
    slots = [a for key in sorted(opt._slots) for a in opt._slots[key].values()]
    fields = {
        "model": json.dumps(model.get_config(), sort_keys=True, default=str),
        "dtype": model.dtype.name,
        "backend": model.backend.name,
        "optimizer": json.dumps(opt.get_config(), sort_keys=True) + f" iterations={opt.iterations}",
        "optimizer state": _crc(slots),
        "generator": json.dumps(model.rng.bit_generator.state, sort_keys=True, default=str),
        "weights": _crc(
            [a for layer in model.layers for d in (layer.params, layer.state) for a in d.values()]
        ),
        "strategy": json.dumps(strategy, sort_keys=True),
    }
    for k, v in fit_args.items():
        fields[k] = v if isinstance(v, str) else json.dumps(v, default=str)
    return fields


def _digest(text: str) -> np.uint64:
    return np.frombuffer(hashlib.blake2b(text.encode(), digest_size=8).digest(), np.uint64)[0]


def check_same(link: Link, fields: dict[str, str]) -> None:
    """Raise DistributedConfigError on every rank if any field differs between ranks."""
    names = sorted(fields)
    mine = np.array([_digest(name + "\0" + fields[name]) for name in names], np.uint64)
    everyone = np.empty((link.size, len(names)), np.uint64)
    # the field names are part of each digest: ranks running different cnnkern versions differ too
    count = np.array([len(names)], np.int64)
    counts = np.empty(link.size, np.int64)
    link.wait([link.comm.Iallgather(count, counts)], "the start-of-training configuration check")
    if len(set(counts.tolist())) != 1:
        raise DistributedConfigError(
            f"{link.where()}: the ranks run different cnnkern versions ({counts.tolist()} fields checked)"
        )
    link.wait([link.comm.Iallgather(mine, everyone)], "the start-of-training configuration check")
    bad = [j for j in range(len(names)) if len(set(everyone[:, j].tolist())) != 1]
    if not bad:
        return
    # every rank is here (the gather completed): exchanging the differing values cannot hang
    values = link.comm.allgather([fields[names[j]] for j in bad])
    lines = []
    for n, j in enumerate(bad):
        texts = [values[r][n] for r in range(link.size)]
        start = _first_difference(texts)
        per_rank = "; ".join(f"rank {r}: {_excerpt(t, start)}" for r, t in enumerate(texts))
        hint = f" ({HINTS[names[j]]})" if names[j] in HINTS else ""
        lines.append(f"{names[j]} differs{hint}: {per_rank}")
    raise DistributedConfigError(
        f"{link.where()}: the ranks were started with different configurations, so no step was taken: "
        + " | ".join(lines)
    )


def _first_difference(texts: list[str]) -> int:
    """The first character position at which the texts are not all equal."""
    i = 0
    while i < min(len(t) for t in texts) and len({t[i] for t in texts}) == 1:
        i += 1
    return i


def _excerpt(text: str, at: int, before: int = 40, limit: int = 120) -> str:
    """``text`` around position ``at`` (where the ranks' values part), at most ``limit`` characters."""
    lo = max(0, at - before)
    piece = text[lo : lo + limit]
    return ("..." if lo else "") + piece + ("..." if lo + limit < len(text) else "")
