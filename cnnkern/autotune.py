"""Per-shape choice of the cpp backend's conv algorithm, measured once and cached on disk (docs/autotune.md).

Where several algorithms can run one conv (``_cpp.conv_algos``: im2col + GEMM, indirect GEMM, the one-channel
direct kernels, the depthwise direct kernels), the first call of a shape times each a few times on the call's
own inputs and keeps the fastest, per (direction, shapes, SIMD path, thread count). Later calls cost one dict
lookup. Choices persist in a JSON file per CPU model and ISA under the user's cache directory, so another CPU
re-measures. Opt-in, ``CNNKERN_AUTOTUNE=1``: by default the fixed heuristics run, since a measured choice can
differ between thread counts and runs (the bitwise rule of docs/threads.md) and on the machine it was
built on it changed 1 choice in 186 (docs/autotune.md). ``CNNKERN_CONV_ALGO=<name>`` forces one
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

ALGOS = ("im2col", "igemm", "c1", "direct", "winograd")
_FORMAT = 1
_ROUNDS, _MAX_ROUNDS, _BUDGET_S = 3, 9, 0.02  # timed rounds of every candidate (see _measure)
_MARGIN = 0.95  # another algorithm replaces the heuristics' choice only when at least 5% faster

_lock = threading.Lock()
_memory: dict[str, str] = {}  # key -> algorithm, this process's view of the cache file
_fast: dict[tuple[Any, ...], str] = {}  # (direction, simd, threads, geometry) -> algorithm: the hot path
_candidates: dict[tuple[Any, ...], list[str]] = {}
_state: dict[str, Any] = {"loaded_from": None, "warned": set()}


# Read at every conv call (tests and users may change them between calls); os.environ.get costs ~0.7 us
# through its Mapping layers, os.environ's own dict (bytes keys on POSIX) ~0.05 us: a batch-1 inference
# makes a few such calls per layer.
_ENV_DATA = getattr(os.environ, "_data", None)
_ENV_KEYS = os.name == "posix" and isinstance(_ENV_DATA, dict)


def _getenv(name: str) -> str:
    if _ENV_KEYS:
        raw = _ENV_DATA.get(name.encode())  # type: ignore[union-attr]
        return "" if raw is None else os.fsdecode(raw)
    return os.environ.get(name, "")


def enabled() -> bool:
    """True when ``CNNKERN_AUTOTUNE`` is ``1`` / ``on`` / ``true`` / ``yes``; else the fixed heuristics."""
    return _getenv("CNNKERN_AUTOTUNE").strip().lower() in ("1", "on", "true", "yes")


def off() -> bool:
    """Neither measuring nor forcing: every conv takes the fixed heuristics (the common case, checked first
    by the cpp backend's conv calls)."""
    return forced() is None and not enabled()


def forced() -> str | None:
    """The algorithm ``CNNKERN_CONV_ALGO`` forces, None if unset or ``auto``; ValueError for another name."""
    name = _getenv("CNNKERN_CONV_ALGO").strip().lower()
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
    if _state["loaded_from"] != path:  # first use, or CNNKERN_CACHE_DIR changed
        _memory.clear()
        _fast.clear()
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
        _fast.clear()
        _candidates.clear()
        _state["loaded_from"] = None


def info() -> dict[str, Any]:
    """What ``cnnkern info`` shows: on/off, the cache file and its entries."""
    path = cache_file()
    with _lock:
        _load()
        entries = len(_memory)
    return {
        "autotune": "on" if enabled() else "off (the fixed heuristics; CNNKERN_AUTOTUNE=1 turns it on)",
        "cache": str(path),
        "entries": entries,
    }


def _key(direction: str, geometry: tuple[Any, ...], simd: str, threads: int) -> str:
    return f"{direction}|{simd}|t{threads}|float32|" + "|".join(",".join(map(str, g)) for g in geometry)


def _candidates_of(backward: bool, simd: str, geometry: tuple[Any, ...]) -> list[str]:
    from . import _cpp

    ckey = (backward, simd, *geometry[:6])
    cands = _candidates.get(ckey)
    if cands is None:
        x_shape, w_shape, stride, padding, dilation, (groups,) = geometry[:6]
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
    return cands


def _measure(cands: list[str], run: Callable[[str], Any]) -> str:
    """The fastest candidate. Rounds run every candidate once, in turn, so a burst of load on a shared machine
    hits them alike: one warm-up round (scratch buffers grow, pages fault in), then at least _ROUNDS timed
    ones, more (up to _MAX_ROUNDS) while they take under _BUDGET_S in all. Each candidate's minimum counts,
    and the heuristics' choice stays unless another beats it by 5% (noise must not flip a choice). Outputs
    are dropped at once: one at a time is alive, as in a plain call."""
    for algo in cands:
        run(algo)
    best_t = dict.fromkeys(cands, float("inf"))
    start = time.perf_counter()
    for r in range(_MAX_ROUNDS):
        if r >= _ROUNDS and time.perf_counter() - start > _BUDGET_S:
            break
        for algo in cands:
            t0 = time.perf_counter()
            run(algo)
            best_t[algo] = min(best_t[algo], time.perf_counter() - t0)
    best = min(cands, key=lambda a: best_t[a])
    if best_t[best] > _MARGIN * best_t[cands[0]]:
        best = cands[0]  # not clearly faster than the heuristics' choice (listed first): keep that
    return best


def choose(direction: str, geometry: tuple[Any, ...], run: Callable[[str], Any]) -> str | None:
    """The algorithm to pass for a conv (None: the heuristics), measured with ``run`` at the shape's first
    use. ``geometry`` is (x shape, w shape, stride, padding, dilation, (groups,), extra) and ``run(algo)``
    computes the conv (or the fused kernel holding it: ``direction`` then names that kernel) by ``algo``;
    ``direction`` starting with ``bwd`` asks for the backward's algorithms."""
    from . import _cpp

    want = forced()
    if want is None and not enabled():
        return None
    simd, threads = _cpp.simd(), _cpp.num_threads()
    fast_key = (direction, simd, threads, geometry)
    if want is None:
        hit = _fast.get(fast_key)
        if hit is not None:
            return hit  # the hot path: one dict lookup
    x_shape, w_shape = geometry[:2]
    if len(x_shape) != 4 or len(w_shape) != 4 or 0 in x_shape or 0 in w_shape:
        return None  # nothing to time: the kernel says what is wrong, or returns an empty result
    cands = _candidates_of(direction.startswith("bwd"), simd, geometry)
    if want is not None:
        return want if want in cands else None
    if len(cands) == 1:
        _fast[fast_key] = cands[0]
        return cands[0]
    key = _key(direction, geometry, simd, threads)
    with _lock:
        _load()
        hit = _memory.get(key)
        if hit in cands:
            _fast[fast_key] = hit
            return hit
        best = _measure(cands, run)
        _memory[key] = best
        _fast[fast_key] = best
        _write(cache_file())
        return best
