"""Per-shape choice of the cpp backend's conv algorithm, measured once and cached on disk (docs/autotune.md).

Where several algorithms can run one conv (``_cpp.conv_algos``: im2col + GEMM, indirect GEMM, the one-channel
direct kernels, the depthwise direct kernels), the first call of a shape times each a few times on the call's
own inputs and keeps the fastest, per (direction, shapes, SIMD path, thread count). Later calls cost one dict
lookup. Choices persist in a JSON file per CPU model and ISA under the user's cache directory, so another CPU
re-measures. ``CNNKERN_AUTOTUNE=0`` keeps the fixed heuristics; ``CNNKERN_CONV_ALGO=<name>`` forces one
algorithm wherever it can run (for tests). Timing runs on the calling Python thread, never inside a kernel.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

ALGOS = ("im2col", "igemm", "c1", "direct")
_FORMAT = 1
_REPEATS = 2  # timed calls per candidate, after one warm-up call; the minimum counts

_lock = threading.Lock()
_memory: dict[str, str] = {}  # key -> algorithm, this process's view of the cache file
_candidates: dict[tuple[Any, ...], list[str]] = {}
_state: dict[str, Any] = {"loaded_from": None, "warned": set()}


def enabled() -> bool:
    """False when ``CNNKERN_AUTOTUNE`` is ``0`` / ``off`` / ``false`` / ``no`` (the fixed heuristics)."""
    return os.environ.get("CNNKERN_AUTOTUNE", "").strip().lower() not in ("0", "off", "false", "no")


def forced() -> str | None:
    """The algorithm ``CNNKERN_CONV_ALGO`` forces, None if unset or ``auto``; ValueError for another name."""
    name = os.environ.get("CNNKERN_CONV_ALGO", "").strip().lower()
    if name in ("", "auto"):
        return None
    if name not in ALGOS:
        raise ValueError(f"CNNKERN_CONV_ALGO must be one of auto, {', '.join(ALGOS)}; got {name!r}")
    return name


def cache_dir() -> Path:
    """``CNNKERN_CACHE_DIR``, else ``$XDG_CACHE_HOME/cnnkern``, else ``~/.cache/cnnkern``."""
    override = os.environ.get("CNNKERN_CACHE_DIR", "").strip()
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cnnkern"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _machine() -> dict[str, Any]:
    from . import __version__, _cpp

    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "isa": list(_cpp.supported_simd()),
        "cnnkern": __version__,
    }


def cache_file() -> Path:
    """This machine's cache file: one per CPU model, ISA set and cnnkern version, so each re-measures."""
    digest = hashlib.sha256(json.dumps(_machine(), sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"conv-algos-{digest}.json"


def _warn_once(what: str, message: str) -> None:
    if what not in _state["warned"]:
        _state["warned"].add(what)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _read(path: Path) -> dict[str, str]:
    """The file's entries; {} if absent; {} with one warning if unreadable or not a cache of this format."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):  # nothing cached there (a write will say if it cannot)
        return {}
    except OSError as exc:
        _warn_once(f"read {path}", f"cnnkern: ignoring the autotune cache {path}: {exc}")
        return {}
    try:
        data = json.loads(text)
        entries = data["entries"]
        if data.get("format") != _FORMAT or not isinstance(entries, dict):
            raise ValueError("not a cache of this format")
        return {str(k): str(v) for k, v in entries.items() if v in ALGOS}
    except (ValueError, KeyError, TypeError) as exc:
        _warn_once(
            f"read {path}", f"cnnkern: ignoring the corrupt autotune cache {path} ({exc}); it is rewritten"
        )
        return {}


def _load() -> None:
    path = cache_file()
    if _state["loaded_from"] != path:
        _memory.clear()
        _memory.update(_read(path))
        _state["loaded_from"] = path


def _write(path: Path) -> None:
    """Merges this process's entries into the file: a temporary file in the same folder, then renamed over it
    (atomic: a reader sees the old file or the new one). Failure: one warning, the choices stay in memory."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        merged = {**_read(path), **_memory}
        data = {"format": _FORMAT, **_machine(), "entries": dict(sorted(merged.items()))}
        fd, tmp = tempfile.mkstemp(prefix=".conv-algos-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=0)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        _warn_once(f"write {path}", f"cnnkern: cannot write the autotune cache {path}: {exc}")


def clear_memory() -> None:
    """Forget the choices held in this process (the file stays); the next call re-reads the file."""
    with _lock:
        _memory.clear()
        _candidates.clear()
        _state["loaded_from"] = None


def info() -> dict[str, Any]:
    """What ``cnnkern info`` shows: on/off, the cache file and its entries."""
    path = cache_file()
    with _lock:
        _load()
        entries = len(_memory)
    return {
        "autotune": "on" if enabled() else "off (CNNKERN_AUTOTUNE=0)",
        "cache": str(path),
        "entries": entries,
    }


def _key(direction: str, geometry: tuple[Any, ...], simd: str, threads: int) -> str:
    return f"{direction}|{simd}|t{threads}|float32|" + "|".join(",".join(map(str, g)) for g in geometry)


def choose(direction: str, geometry: tuple[Any, ...], run: Callable[[str], Any]) -> tuple[str | None, Any]:
    """``(algorithm, result)`` for a conv: the algorithm to pass (None: the heuristics) and, when this call
    measured, the chosen algorithm's output of the timing runs (bitwise what a new call would give), else
    None. ``geometry`` is (x shape, w shape, stride, padding, dilation, (groups,), extra) and ``run(algo)``
    computes the conv (or the fused kernel holding it: ``direction`` then names that kernel) by ``algo``;
    ``direction`` starting with ``bwd`` asks for the backward's algorithms."""
    from . import _cpp

    want = forced()
    if want is None and not enabled():
        return None, None
    x_shape, w_shape, stride, padding, dilation, (groups,), _ = geometry
    if len(x_shape) != 4 or len(w_shape) != 4 or 0 in x_shape or 0 in w_shape:
        return None, None  # nothing to time: the kernel says what is wrong, or returns an empty result
    simd = _cpp.simd()
    backward = direction.startswith("bwd")
    ckey = (backward, simd, *geometry[:6])
    cands = _candidates.get(ckey)
    if cands is None:
        cands = list(
            _cpp.conv_algos(
                x_shape,
                w_shape,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                backward=backward,
            )
        )
        _candidates[ckey] = cands
    if want is not None:
        return (want if want in cands else None), None
    if len(cands) == 1:
        return None, None
    threads = _cpp.num_threads()
    key = _key(direction, geometry, simd, threads)
    hit = _memory.get(key)
    if hit is not None and _state["loaded_from"] is not None:
        return hit, None
    with _lock:
        _load()
        hit = _memory.get(key)
        if hit in cands:
            return hit, None
        best, best_t, best_out = cands[0], float("inf"), None
        for algo in cands:
            out = run(algo)  # warm-up: scratch buffers grow, pages fault in
            t = float("inf")
            for _ in range(_REPEATS):
                t0 = time.perf_counter()
                out = run(algo)
                t = min(t, time.perf_counter() - t0)
            if t < best_t:
                best, best_t, best_out = algo, t, out
        _memory[key] = best
        _write(cache_file())
        return best, best_out
