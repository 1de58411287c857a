"""Every conv algorithm that can run a shape, timed side by side on the cpp backend (docs/autotune.md,
docs/winograd.md): the data behind the fixed heuristics of csrc/kernels/conv_algo.cpp.

    python benchmarks/conv_algo_shapes.py [--threads 1] [--repeat 9] [--backward] [--only 32-64-16]

Shapes: the 3x3 stride-1 convs of the zoo and the recipes (conv_shapes below). For each, every algorithm
`_cpp.conv_algos` lists is called in turn, round after round (interleaved, so a change in the machine's load
hits them alike), and the minimum over --repeat rounds is printed with each algorithm's time over the
heuristics' choice (the first listed, marked *). --backward times conv2d_backward (dx, dw and db) instead of
the forward (with ReLU).
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from typing import Any, Callable

import numpy as np

import cnnkern
from cnnkern import _cpp, ops

# (C, K, input H = W, padding): the zoo's and recipes' 3x3 stride-1 convs, plus sizes around the heuristics'
# thresholds
conv_shapes = [
    (1, 32, 28, 1),
    (3, 32, 32, 1),
    (16, 32, 14, 1),
    (32, 32, 28, 1),
    (32, 32, 32, 1),
    (32, 64, 13, 0),
    (32, 64, 14, 1),
    (32, 64, 16, 1),
    (32, 64, 28, 1),
    (32, 64, 32, 1),
    (64, 64, 5, 0),
    (64, 64, 12, 1),
    (64, 64, 14, 1),
    (64, 64, 16, 1),
]


def _time(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _call(backward: bool, x: np.ndarray, w: np.ndarray, dy: np.ndarray, pad: int) -> Any:
    if backward:
        return ops.conv2d_backward(dy, x, w, padding=pad)
    return ops.conv2d_bias_act_forward(x, w, None, padding=pad, activation="relu")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--only", default="", help="comma list of C-K-H shapes to time (e.g. 32-64-16)")
    p.add_argument("--backward", action="store_true")
    args = p.parse_args()
    cnnkern.set_num_threads(args.threads, "cpp")
    rng = np.random.default_rng(0)
    print(f"cpp {_cpp.simd()}, {args.threads} thread(s), batch {args.batch}, min of {args.repeat}")
    only = {tuple(int(v) for v in s.split("-")) for s in args.only.split(",") if s}
    for c, k, h, pad in conv_shapes:
        if only and (c, k, h) not in only:
            continue
        x = rng.standard_normal((args.batch, c, h, h), dtype=np.float32)
        w = rng.standard_normal((k, c, 3, 3), dtype=np.float32)
        geom = dict(stride=(1, 1), padding=(pad,) * 4, dilation=(1, 1), groups=1)
        algos = _cpp.conv_algos(x.shape, w.shape, **geom, backward=args.backward)
        dy = rng.standard_normal(ops.conv2d_forward(x, w, padding=pad).shape, dtype=np.float32)

        best = {a: float("inf") for a in algos}
        for _ in range(args.repeat):
            for a in algos:
                os.environ["CNNKERN_CONV_ALGO"] = a
                best[a] = min(best[a], _time(functools.partial(_call, args.backward, x, w, dy, pad)))
        os.environ.pop("CNNKERN_CONV_ALGO", None)
        first = best[algos[0]]
        cells = [
            f"{a}{'*' if i == 0 else ''} {best[a] * 1e3:.2f} ms ({best[a] / first:.2f})"
            for i, a in enumerate(algos)
        ]
        print(f"{c:>3} -> {k:<3} {h}x{h} pad {pad}:  " + "  ".join(cells))


if __name__ == "__main__":
    main()
