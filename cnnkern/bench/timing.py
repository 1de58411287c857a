"""Interleaved timing: every candidate of a workload is timed in the same process, round-robin per
repetition, so that machine noise (another process, a frequency change) lands on all of them alike.

A sample is the mean time of ``loops`` back-to-back calls, ``loops`` chosen once per candidate so that a
sample lasts about ``target_s`` (timer resolution and call overhead then vanish). Repetition ``i`` visits
the candidates starting from ``i mod len`` so none is always first after the previous one's cache
footprint. The garbage collector is paused during a sample, as :mod:`timeit` does.

Each sample starts with one untimed call of the same candidate: the runtimes share the process, and the
previous candidate's threads may still be spinning (OpenMP's wait policy keeps PyTorch's and Numba's workers
busy-waiting for a while after a parallel region; the cpp pool spins ~100 us) or be asleep; without that
call, the first timed call of a sample pays for its neighbour rather than for itself. The samples measure
each candidate's steady state, as a training loop runs it.
"""

import gc
import math
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Candidate:
    """One implementation of a workload: ``fn()`` runs it once; ``before()`` (optional) restores what it
    needs from global state before each sample (the cpp SIMD path)."""

    name: str
    fn: object
    before: object = None
    loops: int = 1
    samples: list = field(default_factory=list)

    def prepare(self):
        if self.before is not None:
            self.before()


def time_once(candidate, loops, settle=True):
    """Seconds per call, averaged over ``loops`` calls (after one untimed call when ``settle``)."""
    candidate.prepare()
    enabled = gc.isenabled()
    gc.disable()
    try:
        if settle:
            candidate.fn()
        start = time.perf_counter()
        for _ in range(loops):
            candidate.fn()
        elapsed = time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()
    return elapsed / loops


def calibrate(candidate, target_s, max_loops=100_000):
    """Warm up (JIT compilation, first-touch allocation, thread start-up) and choose ``loops``."""
    candidate.prepare()
    candidate.fn()
    t = time_once(candidate, 1, settle=False)
    if t < target_s / 10:  # a short call: time a few to see past the timer's resolution
        t = time_once(candidate, max(1, min(max_loops, int(target_s / 10 / max(t, 1e-9)))), settle=False)
    candidate.loops = max(1, min(max_loops, math.ceil(target_s / max(t, 1e-9))))
    return candidate.loops


def measure(candidates, *, repeat, target_s, on_repetition=None):
    """Calibrate each candidate, then take ``repeat`` samples of each, interleaved. Samples (seconds per
    call) are appended to ``candidate.samples``. ``on_repetition(i)`` is called after each round."""
    for c in candidates:
        calibrate(c, target_s)
    n = len(candidates)
    for i in range(repeat):
        for j in range(n):
            c = candidates[(i + j) % n]
            c.samples.append(time_once(c, c.loops))
        if on_repetition is not None:
            on_repetition(i)


def summary(samples):
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
