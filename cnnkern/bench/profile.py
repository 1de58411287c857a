"""Per-kernel breakdown of the classic CNN's training step (``cnnkern bench --profile``).

The step runs through the model layer exactly as in the benchmark, on a :class:`TimedBackend`: a Backend
that forwards every kernel call to the real one and adds the call's wall time (after ``synchronize``) to
the (kernel, layer) it belongs to. The layer is recognised from the argument shapes (:mod:`.shapes` knows
the classic CNN's). What the step costs beyond the kernels (front-door validation, the model layer, Python)
is the step's wall time minus the kernels' sum, reported as its own row.

The timer costs about a microsecond per call (perf_counter twice, a dict update), some 40 calls per step.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Optional

from ..backends.base import FUSED_KERNELS, KERNELS, Backend
from ..zoo import classic_cnn_with_weights
from . import shapes as S
from .steps import LR, classic_batch, classic_weights

Key = tuple[str, Optional[tuple[int, ...]]]
"""(kernel, key shape): what a kernel call is attributed to (the shape None where none identifies it)."""
LayerTable = dict[tuple[str, tuple[int, ...]], tuple[str, int, int]]
"""(kernel, key shape) -> (layer name, FLOPs, bytes) of one call."""


def _key_shape(kernel: str, args: Sequence[Any]) -> tuple[int, ...] | None:
    """The shape that identifies the layer of a kernel call (the layer's input, or its output for the
    activation backward), or None."""
    pick = {
        "conv2d_forward": 0,
        "conv2d_bias_act_forward": 0,
        "conv2d_backward": 1,
        "conv2d_act_maxpool_forward": 0,  # the pair keyed by the conv's input x
        "conv2d_act_maxpool_backward": 3,
        "maxpool2d_forward": 0,
        "maxpool2d_values_forward": 0,
        "dense_forward": 0,
        "dense_bias_act_forward": 0,
        "dense_backward": 1,
        "activation_forward": 0,
        "activation_backward": 1,
        "softmax_cross_entropy_forward": 0,
        "softmax_cross_entropy_backward": 0,
    }
    if kernel in ("maxpool2d_backward", "maxpool2d_act_backward"):  # keyed by x_shape
        return tuple(args[2])
    if kernel in pick and len(args) > pick[kernel]:
        return tuple(args[pick[kernel]].shape)
    return None


def layer_table(batch: int) -> LayerTable:
    """{(kernel, key shape): (layer name, FLOPs, bytes)} for every kernel call of the classic CNN's step."""
    table: LayerTable = {}
    for spec in S.classic_layers(batch).values():
        shape: tuple[int, ...]
        kernels: tuple[str, str]
        if isinstance(spec, S.Conv):
            shape, kernels = (spec.n, spec.c, spec.h, spec.w), ("conv2d_forward", "conv2d_backward")
        elif isinstance(spec, S.Pool):
            shape, kernels = (spec.n, spec.c, spec.h, spec.w), ("maxpool2d_forward", "maxpool2d_backward")
        elif isinstance(spec, S.Dense):
            shape, kernels = (spec.n, spec.fin), ("dense_forward", "dense_backward")
        elif isinstance(spec, S.Elementwise):
            shape, kernels = tuple(spec.shape), ("activation_forward", "activation_backward")
        elif isinstance(spec, S.Loss):
            shape, kernels = (
                (spec.n, spec.classes),
                ("softmax_cross_entropy_forward", "softmax_cross_entropy_backward"),
            )
        else:
            continue
        table[(kernels[0], shape)] = (spec.name, spec.forward_flops(), spec.forward_bytes())
        fused = {"conv2d_forward": "conv2d_bias_act_forward", "dense_forward": "dense_bias_act_forward"}
        if kernels[0] in fused:  # the model layer runs conv/dense + bias + activation as one fused kernel
            table[(fused[kernels[0]], shape)] = table[(kernels[0], shape)]
        table[(kernels[1], shape)] = (spec.name, spec.backward_flops(), spec.backward_bytes())
        if kernels[0] == "maxpool2d_forward":  # inference: y without the argmax
            table[("maxpool2d_values_forward", shape)] = table[(kernels[0], shape)]
        if kernels[1] == "maxpool2d_backward":  # + the activation's gradient, in one pass over the plane
            table[("maxpool2d_act_backward", shape)] = table[(kernels[1], shape)]
    _fused_conv_pool_rows(table, batch)
    return table


def _fused_conv_pool_rows(table: LayerTable, batch: int) -> None:
    """Rows for the model layer's Conv2D + MaxPooling2D pairs (ops.conv2d_act_maxpool_*), named 'conv1+pool1',
    keyed by the conv's input shape."""
    for pair in S.conv_pool_pairs(batch).values():
        c = pair.conv
        shape = (c.n, c.c, c.h, c.w)
        fwd, bwd = ("conv2d_act_maxpool_forward", shape), ("conv2d_act_maxpool_backward", shape)
        table[fwd] = (pair.name, pair.forward_flops(), pair.forward_bytes())
        table[bwd] = (pair.name, pair.backward_flops(), pair.backward_bytes())


class TimedBackend(Backend):
    """Wraps a Backend; every kernel call is timed and attributed to ``(kernel, key shape)``."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.dtypes = inner.dtypes
        self.array_module = inner.array_module
        # (kernel, key shape) -> [calls, seconds]
        self.records: defaultdict[Key, list[float]] = defaultdict(lambda: [0, 0.0])
        self.adam_values = 0  # parameter values updated, for Adam's byte and FLOP counts

    def info(self) -> dict[str, Any]:
        return self.inner.info()

    def synchronize(self) -> None:
        self.inner.synchronize()

    def reset(self) -> None:
        self.records.clear()
        self.adam_values = 0


def _timed(kernel: str) -> Callable[..., Any]:
    def method(self: TimedBackend, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = getattr(self.inner, kernel)(*args, **kwargs)
        self.inner.synchronize()
        seconds = time.perf_counter() - start
        rec = self.records[(kernel, _key_shape(kernel, args))]
        rec[0] += 1
        rec[1] += seconds
        if kernel == "adam_update":
            self.adam_values += int(args[0].size)
        elif kernel == "adam_update_multi":
            self.adam_values += sum(int(p.size) for p in args[0])
        return out

    method.__name__ = kernel
    return method


for _k in KERNELS + FUSED_KERNELS:
    setattr(TimedBackend, _k, _timed(_k))


def profile_step(
    backend: Backend, batch: int, steps: int = 20, warmup: int = 3, seed: int = 0, inference: bool = False
) -> dict[str, Any]:
    """Run ``steps`` training steps (or, with ``inference``, forward passes: ``Sequential.predict`` on one
    batch) of the classic CNN through the model layer on ``backend`` (a Backend) and return the breakdown:
    rows (layer, kernel, calls/step, s/step, FLOPs/step, bytes/step) and the step time. Per-step figures are
    totals over the steps divided by ``steps``."""
    timed = TimedBackend(backend)
    model = classic_cnn_with_weights(classic_weights(seed), timed, lr=LR)
    images, labels = classic_batch(batch, seed)

    def step() -> None:
        if inference:
            model.predict(images, batch_size=batch)
        else:
            model.train_on_batch(images, labels)

    for _ in range(warmup):
        step()
    timed.reset()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    step_s = (time.perf_counter() - start) / steps

    known = layer_table(batch)
    rows: list[dict[str, Any]] = []
    for (kernel, shape), (calls, seconds) in timed.records.items():
        layer: str
        flops: float | None
        nbytes: float | None
        if kernel in ("adam_update", "adam_update_multi"):
            layer, flops, nbytes = "adam", 12 * timed.adam_values, 7 * S.F32 * timed.adam_values
        elif shape is not None and (kernel, shape) in known:
            layer, flops, nbytes = known[(kernel, shape)]
            flops, nbytes = flops * calls, nbytes * calls
        else:
            layer, flops, nbytes = f"shape {shape}", None, None
        rows.append(
            {
                "layer": layer,
                "kernel": kernel,
                "calls": calls / steps,
                "seconds": seconds / steps,
                "flops": None if flops is None else flops / steps,
                "bytes": None if nbytes is None else nbytes / steps,
            }
        )
    order = {name: i for i, name in enumerate(S.classic_layers(batch))}
    order.update({r["layer"]: order[r["layer"].split("+")[0]] for r in rows if "+" in r["layer"]})
    rows.sort(key=lambda r: (order.get(r["layer"], len(order)), "backward" in r["kernel"], r["kernel"]))
    kernels_s = sum(r["seconds"] for r in rows)
    return {
        "backend": backend.name,
        "workload": "inference" if inference else "training step",
        "info": {k: str(v) for k, v in backend.info().items()},
        "batch": batch,
        "steps": steps,
        "step_s": step_s,
        "kernels_s": kernels_s,
        "outside_s": step_s - kernels_s,
        "rows": rows,
    }
