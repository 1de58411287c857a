"""``cnnkern bench --model FILE [--model FILE ...]``: inference of saved model files, float (``Model.save``,
``cnnkern train --save``) or int8 (``QuantizedModel.save``, ``cnnkern quantize``): ``predict`` of one batch
at each batch size, each file on each requested backend, timed in one process, interleaved
(:mod:`.timing`); medians, and with several candidates the ratio of each to the first row of its batch
(e.g. ``--model m.npz --model m8.npz``: int8 over float32, from this run only).

The inputs are seeded uniform [0, 1) images of the model's input shape (the times do not depend on the
values). Before timing, each candidate's output on two images is checked against the reference backend's
output of the same file: equal for an int8 file (every backend's int8 kernels are exact), within 1e-3 of the
largest output for a float one; a candidate that differs is not timed and the command exits 1."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from . import timing

if TYPE_CHECKING:
    from ..compress import QuantizedModel
    from ..models import Model

DEFAULT_BATCHES = [1, 128]
CHECK_IMAGES = 2
FLOAT_RTOL = 1e-3  # as the classic CNN's inference workload (.steps.Inference)


def check_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The backends to run on; exits 2 (``parser.error``) for options that do not apply to ``--model``,
    a file named twice, and backends unknown or unavailable here. The files themselves are read later."""
    from .. import backends

    others = {
        "--zoo": args.zoo,
        "--int8": args.int8,
        "--profile": args.profile,
        "--plot": args.plot,
        "--simd": args.simd,
        "--data": args.data,
        "--epochs": args.epochs,
        "--target": args.target,
        "--steps": args.steps,
    }
    given = [k for k, v in others.items() if v is not None and v is not False]
    given += ["--only"] if args.only != "all" else []
    if given:
        parser.error(
            f"--model times the inference of saved model files: it does not combine with {', '.join(given)}"
        )
    seen: set[str] = set()
    for path in args.model:
        key = os.path.realpath(path)
        if key in seen:
            parser.error(f"--model {path} is given twice")
        seen.add(key)
    if args.backends is None:
        names = [n for n in backends.available() if n != "reference"]
    elif args.backends == ["all"]:
        names = backends.available()
    else:
        names = list(dict.fromkeys(args.backends))
    for name in names:
        if name == "torch":
            parser.error(
                "--backends: torch cannot run a cnnkern model file; --model times cnnkern backends only "
                "(`cnnkern bench --int8` compares with PyTorch's int8 model)"
            )
        if name not in backends.NAMES:
            parser.error(f"--backends: unknown backend {name!r}; choose from {', '.join(backends.NAMES)}")
        if backends.probe(name) is not None:
            parser.error(f"backend {name!r} is unavailable: {backends.probe(name)}")
    for flag, value in (("--threads", args.threads), ("--repeat", args.repeat)):
        if value is not None and value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    if args.threads is not None and "cpp" in names:
        too_many = backends.get("cpp").thread_count_error(args.threads)
        if too_many is not None:
            parser.error(f"--threads: {too_many}")
    return names


def load(path: str, backend: str) -> Model | QuantizedModel:
    """The model file at ``path`` on ``backend``; :class:`~cnnkern.cli_common.CommandError` (exit 1) naming
    the path and what is wrong if it is missing, unreadable, not a cnnkern model, or cannot run there."""
    from ..cli_common import CommandError
    from ..models import load_model

    if os.path.isdir(path):
        raise CommandError(f"--model {path}: is a directory, not a model file")
    if not os.path.isfile(path):
        raise CommandError(f"--model {path}: no model file there")
    try:
        return load_model(path, backend=backend)
    except OSError as exc:
        raise CommandError(f"--model {path}: cannot read it ({exc.strerror or exc})") from None
    except (ValueError, RuntimeError, TypeError) as exc:
        text = str(exc)
        where = "" if path in text else f"{path}: "
        on = "" if backend == "reference" else f" (loading it on backend {backend})"  # the first load
        raise CommandError(f"--model {where}{text}{on}") from None


def kind(model: Model | QuantizedModel) -> str:
    """'int8' for an int8 model, else the float model's dtype name."""
    from ..compress import QuantizedModel

    return "int8" if isinstance(model, QuantizedModel) else model.dtype.name


def verify(model: Model | QuantizedModel, want: np.ndarray, x: np.ndarray) -> str | None:
    """None if ``model``'s output on ``x`` matches the reference backend's ``want``, else what differs."""
    got = np.asarray(model.predict(x, batch_size=len(x)), np.float64)
    if got.shape != want.shape:
        return f"output shape {got.shape}, the reference backend's {want.shape}"
    err = np.abs(got - want)
    exact = kind(model) == "int8"  # every backend's int8 kernels equal the reference's
    if not np.all(err <= (0 if exact else FLOAT_RTOL * np.max(np.abs(want)))):  # also false for NaN
        what = "int8 outputs differ from" if exact else "outputs differ from"
        return f"{what} the reference backend's (max |error| {np.nanmax(err):.3g})"
    return None


def prepare(paths: list[str], names: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(candidates, failures): every file loaded on every backend and checked (:func:`verify`); a candidate
    holds its file, format, backend, input shape and model; a failure its status instead of the model."""
    rng = np.random.default_rng(0)
    cands: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for path in paths:
        ref = load(path, "reference")
        if ref.input_shape is None:  # a loaded model is built, so this does not happen
            raise RuntimeError(f"{path}: the model has no input shape")
        shape = tuple(ref.input_shape)
        x_check = rng.random((CHECK_IMAGES, *shape), dtype=np.float32)
        want = np.asarray(ref.predict(x_check, batch_size=CHECK_IMAGES), np.float64)
        for name in names:
            model = ref if name == "reference" else load(path, name)
            info = {"file": path, "format": kind(model), "backend": name, "input_shape": list(shape)}
            problem = verify(model, want, x_check)
            if problem is not None:
                failures.append({**info, "status": problem})
            else:
                cands.append({**info, "model": model})
    return cands, failures


def run_models(
    cands: list[dict[str, Any]],
    batches: list[int],
    *,
    repeat: int,
    target_s: float,
    settle_s: float,
    log: Any = print,
) -> list[dict[str, Any]]:
    """One record per batch size: every candidate's (:func:`prepare`) raw samples, summary and its median
    over the first candidate's."""
    rng = np.random.default_rng(1)
    records: list[dict[str, Any]] = []
    for b in batches if cands else []:
        timed = [
            timing.Candidate(
                f"{c['file']} on {c['backend']}",
                _predict(c["model"], rng.random((b, *c["input_shape"]), dtype=np.float32)),
            )
            for c in cands
        ]
        log(f"timing batch {b}: {', '.join(t.name for t in timed)}")
        timing.measure(timed, repeat=repeat, target_s=target_s, settle_s=settle_s)
        first = timing.summary(timed[0].samples)["median_s"]
        rows = []
        for c, t in zip(cands, timed):
            s = timing.summary(t.samples)
            info = {k: v for k, v in c.items() if k != "model"}
            rows.append({**info, "samples_s": t.samples, **s, "vs_first": s["median_s"] / first})
        records.append({"batch": b, "candidates": rows})
    return records


def _predict(model: Model | QuantizedModel, x: np.ndarray) -> Any:
    """``predict`` of the whole batch ``x`` in one call (a function, so that each candidate binds its own)."""
    return lambda: model.predict(x, batch_size=len(x))


def table(records: list[dict[str, Any]]) -> str:
    """One row per (batch, candidate): median and IQR in ms, images/s, and the ratio to the batch's first
    row where there are several."""
    rows = [c for r in records for c in r["candidates"]]
    if not rows:
        return "nothing timed"
    several = len(records[0]["candidates"]) > 1
    width = max(len("file"), *(len(c["file"]) for c in rows))
    head = f"{'file':<{width}}  {'format':<8}{'backend':<10}{'batch':>6}{'median ms':>12}{'IQR ms':>10}"
    head += f"{'images/s':>12}" + (f"{'vs first':>10}" if several else "")
    lines = [head]
    for r in records:
        for c in r["candidates"]:
            line = (
                f"{c['file']:<{width}}  {c['format']:<8}{c['backend']:<10}{r['batch']:>6}"
                f"{c['median_s'] * 1e3:>12.3f}{(c['q3_s'] - c['q1_s']) * 1e3:>10.3f}"
                f"{r['batch'] / c['median_s']:>12,.0f}"
            )
            lines.append(line + (f"{c['vs_first']:>10.2f}" if several else ""))
    if several:
        first = records[0]["candidates"][0]
        lines.append(
            f"vs first: median time over that of the batch's first row ({first['file']} on "
            f"{first['backend']}), from this run"
        )
    return "\n".join(lines)


def bench_models(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``cnnkern bench --model``: check the command line (exit 2), time, print; exit 1 if a file cannot be
    loaded (:func:`load`) or a candidate's check failed."""
    from . import FULL, QUICK, report, runner

    names = check_arguments(args, parser)
    mode = QUICK if args.quick else FULL
    repeat = args.repeat or mode["repeat"]
    threads = args.threads or runner.default_threads()
    runner.apply_threads(threads, names, False)
    cands, failures = prepare(args.model, names)  # a file that cannot be read stops here, before any timing
    info = f"{threads} thread(s)"
    if "cpp" in names:
        from .. import _cpp

        gemm = getattr(_cpp, "q8_gemm_path", None)  # the int8 GEMM's instruction set, where reported
        info += f", cpp SIMD path {_cpp.simd()}" + (f", int8 GEMM {gemm()}" if gemm else "")
    print(f"model inference: {info}; medians of {repeat} interleaved samples")
    records = run_models(
        cands,
        args.batch or DEFAULT_BATCHES,
        repeat=repeat,
        target_s=mode["target_s"],
        settle_s=mode["settle_s"],
        log=lambda text: print(text, file=sys.stderr, flush=True),
    )
    print(table(records))
    if args.json:
        options = {k: v for k, v in vars(args).items() if k not in ("run", "command_parsers")}
        meta = {"options": options, "threads": threads, "info": info, "machine": runner.machine()}
        report.write_json({"meta": meta, "models": records, "failed": failures}, args.json)
        print(f"saved {args.json}")
    if failures:
        print(f"{len(failures)} candidate(s) not timed because their result was wrong:", file=sys.stderr)
        for f in failures:
            print(f"  {f['file']} on {f['backend']}: {f['status']}", file=sys.stderr)
        return 1
    return 0
