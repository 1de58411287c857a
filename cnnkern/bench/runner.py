"""The benchmark run: settings, candidates per workload, the check, the interleaved timing, the records.

A record (one per workload) holds, per candidate, the raw samples (seconds per call) and what the report
derives from them: median, quartiles, min, max, GFLOP/s, GB/s, % of the FMA peak estimate, and the ratio of
its median time to PyTorch's (NCHW, and channels_last where PyTorch ran both) from the same run. A candidate
whose first result disagrees with the reference is not timed; its record holds the reason instead.
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Union

from .. import backends
from . import peak, steps, timing, zoo
from .workloads import Workload, classic_workloads, resnet_workloads

AnyWorkload = Union[Workload, steps.TrainStep, steps.Inference, zoo.ZooTrainStep, zoo.ZooInference]
"""What a run times: a kernel workload, the classic CNN's training step or inference, or a zoo model's."""
Log = Callable[[str], object]

TORCH = "torch"
TORCH_FORMAT_NAMES = {"nchw": "torch", "channels_last": "torch/cl"}


@dataclass
class Settings:
    backends: list[str]  # cnnkern backend names to time
    torch: bool  # PyTorch as a peer
    simd: list[str]  # the cpp backend's SIMD paths to time
    batches: list[int] = field(default_factory=lambda: [32, 128])
    repeat: int = 15
    target_s: float = 0.02  # length of one sample
    settle_s: float = 0.015  # untimed calls before each sample (timing.py)
    threads: int = 1
    resnet: bool = True  # the two ResNet-like convolutions
    kernels: bool = True  # each layer's kernels
    steps: bool = True  # training step and inference
    quick: bool = False  # shorter peak measurement
    seed: int = 0
    zoo: list[str] = field(
        default_factory=list
    )  # zoo models (bench/zoo.py) to time: training step, inference


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def apply_threads(n: int, backend_names: Sequence[str], with_torch: bool) -> dict[str, int]:
    """Give the cpp and numba backends (those named) and PyTorch (``with_torch``) ``n`` threads each; return
    what each reports afterwards."""
    out: dict[str, int] = {}
    if "cpp" in backend_names:
        # The pool starts at its first use, sized by CNNKERN_NUM_THREADS; resize only if it differs.
        os.environ["CNNKERN_NUM_THREADS"] = str(n)
        cpp_backend = backends.get("cpp")
        if cpp_backend.num_threads() != n:
            cpp_backend.set_num_threads(n)
        out["cpp"] = cpp_backend.num_threads()
    if "numba" in backend_names:
        os.environ.setdefault("NUMBA_NUM_THREADS", str(n))  # the pool's size, if numba is not loaded yet
        # Through the backend, never numba directly: creating it starts Numba's threading layer with
        # cnnkern's settings (idle workers sleep, configure_threading); a layer started here first would
        # keep OpenMP's spinning defaults for the whole process.
        numba_backend = backends.get("numba")
        numba_backend.set_num_threads(min(n, numba_backend.max_threads()))
        out["numba"] = numba_backend.num_threads()
    if with_torch:
        from .. import torch_ref

        torch_ref.set_threads(n)
        out["torch"] = torch_ref.require_torch().get_num_threads()
    return out


def workloads(settings: Settings) -> list[AnyWorkload]:
    """The workloads of a run, in the order they are run and reported."""
    out: list[AnyWorkload] = []
    if settings.steps:
        out += [steps.TrainStep(b, settings.seed) for b in settings.batches]
        out += [steps.Inference(b, settings.seed) for b in settings.batches]
    if settings.kernels:
        for b in settings.batches:
            out += classic_workloads(b, settings.seed)
        if settings.resnet:
            out += resnet_workloads(settings.seed)
    out += zoo.zoo_workloads(settings.zoo, settings.batches, settings.seed)
    return out


def candidates(
    workload: AnyWorkload, settings: Settings
) -> list[tuple[str, Callable[[], Callable[[], Any]], Callable[[], Any] | None]]:
    """(name, bind, before) per candidate: bind() gives the callable, before() restores the SIMD path."""
    out: list[tuple[str, Callable[[], Callable[[], Any]], Callable[[], Any] | None]] = []
    for name in settings.backends:
        be = backends.get(name)
        if name == "cpp":
            for path in settings.simd:
                out.append(
                    (
                        f"cpp/{path}",
                        functools.partial(workload.bind, be),
                        functools.partial(backends.get("cpp").set_simd, path),
                    )
                )
        else:
            out.append((name, functools.partial(workload.bind, be), None))
    if settings.torch:
        for fmt in workload.torch_formats:
            out.append((TORCH_FORMAT_NAMES[fmt], functools.partial(workload.bind_torch, fmt), None))
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "node": platform.node(),
        "system": f"{platform.system()} {platform.release()}",
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "usable_cpus": default_threads(),
    }


def versions(settings: Settings) -> dict[str, str | None]:
    import numpy

    from .. import __version__

    out: dict[str, str | None] = {
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "cnnkern": __version__,
    }
    if settings.torch:
        from .. import torch_ref

        out["torch"] = torch_ref.torch_version()
    if "numba" in settings.backends:
        import numba

        out["numba"] = numba.__version__
    return out


def _derive(record: dict[str, Any], peak_gflops: float | None) -> None:
    """Add GFLOP/s, GB/s, % of peak and the ratios to PyTorch to every timed candidate of a record."""
    cands = record["candidates"]
    for c in cands.values():
        if c["status"] != "ok":
            continue
        med = c["median_s"]
        c["gflops"] = record["flops"] / med / 1e9 if record["flops"] else None
        c["gbs"] = record["bytes"] / med / 1e9 if record["bytes"] else None
        c["pct_peak"] = 100 * c["gflops"] / peak_gflops if c["gflops"] and peak_gflops else None
        for peer, key in (("torch", "vs_torch"), ("torch/cl", "vs_torch_cl")):
            ref = cands.get(peer)
            c[key] = med / ref["median_s"] if ref and ref["status"] == "ok" else None


def measure_workload(
    workload: AnyWorkload, settings: Settings, peak_gflops: float | None, log: Log
) -> dict[str, Any]:
    """Check each candidate once, time the ones that pass (interleaved), return the record."""
    timed: list[timing.Candidate] = []
    record: dict[str, Any] = {
        "kernel": workload.kernel,
        "label": workload.label,
        "flops": workload.flops,
        "bytes": workload.bytes,
        "candidates": {},
    }
    for name, bind, before in candidates(workload, settings):
        try:
            if before is not None:
                before()
            fn = bind()
            problem = workload.verify(fn)
        except Exception as exc:  # a kernel a backend lacks, or one that raises: reported, never hidden
            problem = f"error: {type(exc).__name__}: {exc}"
        if problem:
            record["candidates"][name] = {"status": f"not timed: {problem}"}
            log(f"    {name}: NOT TIMED: {problem}")
        else:
            timed.append(timing.Candidate(name, fn, before))
    timing.measure(timed, repeat=settings.repeat, target_s=settings.target_s, settle_s=settings.settle_s)
    for c in timed:
        record["candidates"][c.name] = {
            "status": "ok",
            "loops": c.loops,
            "samples_s": c.samples,
            **timing.summary(c.samples),
        }
    _derive(record, peak_gflops)
    return record


def run(settings: Settings, log: Log | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole run: metadata, peak estimate, every workload. Returns the JSON-ready result."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    start = time.perf_counter()
    threads = apply_threads(settings.threads, settings.backends, settings.torch)
    cpp = backends.get("cpp") if "cpp" in settings.backends else None
    simd_default = cpp.simd() if cpp is not None else None
    log(f"threads: {threads}; estimating the FMA peak (BLAS sgemm in a subprocess, cpp GEMM)...")
    est = peak.estimate(settings.threads, cpp, settings.simd, quick=settings.quick)
    work = workloads(settings)
    results = []
    try:
        for i, w in enumerate(work):
            elapsed = time.perf_counter() - start
            log(
                f"[{i + 1:>3}/{len(work)} {int(elapsed) // 60}:{int(elapsed) % 60:02d}] {w.kernel}  {w.label}"
            )
            results.append(measure_workload(w, settings, est["peak_gflops"], log))
    finally:
        if cpp is not None and simd_default is not None:
            cpp.set_simd(simd_default)
    log(f"done in {time.perf_counter() - start:.0f} s")
    return {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "options": options,
            "settings": asdict(settings),
            "machine": machine(),
            "unavailable": {n: backends.probe(n) for n in backends.NAMES if backends.probe(n) is not None},
            "threads": threads,
            "versions": versions(settings),
            "simd": {"default": simd_default, "supported": cpp.supported_simd() if cpp else None},
            "train_step": "cnnkern: Sequential.train_on_batch on the model of `cnnkern train`; PyTorch: "
            "cnnkern.torch_ref.TrainStep",
            "ratios": "median time / PyTorch median time, same run (below 1: faster than PyTorch)",
        },
        "peak": est,
        "results": results,
    }
