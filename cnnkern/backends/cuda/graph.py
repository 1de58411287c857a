"""Capture a sequence of CUDA-backend calls into a CUDA graph and replay it with one launch.

A training step of a small CNN is dozens of short kernels; launched one by one from Python, the launch
overhead dominates at small batch sizes. :class:`CapturedStep` records them once and replays them::

    step = CapturedStep(lambda: train_step(x_static, labels_static))   # warm-up, then capture
    for xb, yb in batches:
        x_static[...] = xb                # inputs: copy into the captured buffers
        labels_static[...] = yb
        loss = step()                     # one graph launch; returns what the function returned

Rules (CUDA stream capture): the function must only queue device work, with no host synchronisation (no
``float(loss)``, no ``.get()``, no host-to-device copies from NumPy) and no shape-dependent Python branches
that change between calls; it always reads and writes the same buffers. The warm-up calls run it eagerly
first, which compiles the kernels and fills caches (such as ``adam_update_multi``'s pointer table) so the
captured call needs none of that. Memory the function allocates during capture comes from a private CuPy
memory pool kept alive with the graph, so buffers freed inside the function can never be handed to other
code while replays still write to them; the arrays it returns are overwritten by each replay and live in that
pool, so keep the CapturedStep alive while they are in use. Host scalars passed to kernels are frozen at
capture: a value that changes per step must live on the device (``adam_update_multi`` takes the step count
as a 0-d device array for this; ``step += 1`` inside the function is captured too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class CapturedStep:
    """``fn()`` captured once (after ``warmup`` eager calls) into a CUDA graph; calling the object replays it
    on a private stream and returns what ``fn`` returned at capture time (its arrays updated by the replay).
    A replay is ordered after the work queued on the caller's current stream and before the work queued
    there afterwards, so copying inputs in and reading results out need no explicit synchronisation."""

    def __init__(self, fn: Callable[[], Any], *, warmup: int = 2) -> None:
        import cupy

        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        if not isinstance(warmup, int) or warmup < 1:
            raise ValueError(
                f"warmup must be an integer >= 1 (kernels compile and caches fill eagerly), got {warmup!r}"
            )
        self._cp = cupy
        self._stream = cupy.cuda.Stream(non_blocking=True)
        self._pool = cupy.cuda.MemoryPool()
        caller = cupy.cuda.get_current_stream()
        self._stream.wait_event(caller.record())  # the inputs may still be being written there
        with cupy.cuda.using_allocator(self._pool.malloc), self._stream:
            for _ in range(warmup):
                fn()
            self._stream.synchronize()
            self._stream.begin_capture()
            try:
                self.outputs = fn()
            finally:
                graph = self._stream.end_capture()
        self._graph = graph
        caller.wait_event(self._stream.record())

    def __call__(self) -> Any:
        # order the replay after work already queued on the caller's stream (the input copies), and the
        # caller's later work after the replay: the private stream is non-blocking, so nothing else does
        caller = self._cp.cuda.get_current_stream()
        self._stream.wait_event(caller.record())
        self._graph.launch(stream=self._stream)
        caller.wait_event(self._stream.record())
        return self.outputs
