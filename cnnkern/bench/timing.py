"""Interleaved timing: every candidate of a workload is timed in the same process, round-robin per
repetition, so that machine noise (another process, a frequency change) lands on all of them alike.

A sample is the mean time of ``loops`` back-to-back calls, ``loops`` chosen once per candidate so that a
sample lasts about ``target_s`` (timer resolution and call overhead then vanish). Repetition ``i`` visits
the candidates starting from ``i mod len`` so none is always first after the previous one's cache
footprint. The garbage collector is paused during a sample, as :mod:`timeit` does.

Each sample starts with untimed calls of the same candidate, for at least ``settle_s`` (and at least one):
the runtimes share the process, and the previous candidate's threads may still be spinning or be asleep.
OpenMP's default wait policy keeps PyTorch's (and Numba's) workers busy-waiting after a parallel region:
measured here (2 cores), the cpp conv2 forward (5 ms alone) took 7.4 ms and 6.6 ms for its first two calls
after a PyTorch call, and ran clean again ~10 ms after it; the cpp pool itself spins ~100 us. Without the
settling, the start of a sample pays for its neighbour rather than for itself (up to half of a 20 ms sample
of a short kernel). The samples measure each candidate's steady state, as a training loop runs it.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Candidate:
    """One implementation of a workload: ``fn()`` runs it once; ``before()`` (optional) restores what it
    needs from global state before each sample (the cpp SIMD path)."""

    name: str
    fn: Callable[[], object]
    before: Callable[[], object] | None = None
    loops: int = 1
    samples: list[float] = field(default_factory=list)

    def prepare(self) -> None:
        if self.before is not None:
            self.before()


SETTLE_S = 0.015  # the neighbours' spinning outlasted 10 ms in the measurement above


def time_once(candidate: Candidate, loops: int, settle_s: float | None = SETTLE_S) -> float:
    """Seconds per call, averaged over ``loops`` calls, after untimed calls for ``settle_s`` seconds (at least
    one call; None: none)."""
    candidate.prepare()
    enabled = gc.isenabled()
    gc.disable()
    try:
        if settle_s is not None:
            start = time.perf_counter()
            candidate.fn()
            while time.perf_counter() - start < settle_s:
                candidate.fn()
        start = time.perf_counter()
        for _ in range(loops):
            candidate.fn()
        elapsed = time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()
    return elapsed / loops


def calibrate(candidate: Candidate, target_s: float, max_loops: int = 100_000) -> int:
    """Warm up (JIT compilation, first-touch allocation, thread start-up) and choose ``loops``."""
    candidate.prepare()
    candidate.fn()
    t = time_once(candidate, 1, settle_s=None)
    if t < target_s / 10:  # a short call: time a few to see past the timer's resolution
        t = time_once(candidate, max(1, min(max_loops, int(target_s / 10 / max(t, 1e-9)))), settle_s=None)
    candidate.loops = max(1, min(max_loops, math.ceil(target_s / max(t, 1e-9))))
    return candidate.loops


def measure(
    candidates: Sequence[Candidate],
    *,
    repeat: int,
    target_s: float,
    settle_s: float | None = SETTLE_S,
    on_repetition: Callable[[int], object] | None = None,
) -> None:
    """Calibrate each candidate, then take ``repeat`` samples of each, interleaved (each after ``settle_s``
    of untimed calls). Samples (seconds per call) are appended to ``candidate.samples``.
    ``on_repetition(i)`` is called after each round."""
    for c in candidates:
        calibrate(c, target_s)
    n = len(candidates)
    for i in range(repeat):
        for j in range(n):
            c = candidates[(i + j) % n]
            c.samples.append(time_once(c, c.loops, settle_s))
        if on_repetition is not None:
            on_repetition(i)


def summary(samples: Sequence[float]) -> dict[str, float]:
    """median, quartiles, min, max (seconds) of a list of samples."""
    a = np.asarray(samples, dtype=np.float64)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {
        "median_s": float(med),
        "q1_s": float(q1),
        "q3_s": float(q3),
        "min_s": float(a.min()),
        "max_s": float(a.max()),
    }
