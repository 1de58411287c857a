"""The drop-in measurement: one training step (forward, cross-entropy, backward, Adam) of the classic CNN in
PyTorch, unconverted against ``cnnkern.torch.convert``-ed (with torch.optim.Adam, and with
cnnkern.torch.optim.Adam), NCHW float32, interleaved in one process in blocks (each round runs a block of
steps of each, rotating which goes first, so they share the machine's noise alike; the first steps of a block
are not timed), medians.

    PYTHONPATH=. python benchmarks/torch_dropin.py [--threads 2] [--batches 32 128] [--rounds 30]

Not a test (it is not collected: only ``bench_*.py`` are); it prints one line per batch size.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch

import cnnkern.torch as ct
from cnnkern import backends, torch_ref
from cnnkern.bench import runner
from cnnkern.bench.shapes import CLASSIC_PARAM_SHAPES

BLOCK, SETTLE = 8, 2  # steps timed per block, after this many untimed ones


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return time.perf_counter() - start


def measure(batch: int, rounds: int, warmup: int = 3) -> tuple[float, float, float]:
    """Median seconds per step: (torch.nn, converted, converted with cnnkern.torch.optim.Adam)."""
    rng = np.random.default_rng(0)
    weights = [(rng.standard_normal(s) * 0.05).astype(np.float32) for s in CLASSIC_PARAM_SHAPES]
    ref = torch_ref.classic_cnn(weights)
    conv, _ = ct.convert(copy.deepcopy(ref))
    conv2, _ = ct.convert(copy.deepcopy(ref))
    x = torch.from_numpy(rng.random((batch, 1, 28, 28), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, batch))
    runs = [
        (ref, torch.optim.Adam(ref.parameters())),
        (conv, torch.optim.Adam(conv.parameters())),
        (conv2, ct.optim.Adam(conv2.parameters())),
    ]
    for model, opt in runs:
        for _ in range(warmup):
            _step(model, opt, x, y)
    # in blocks: a user's loop runs one model, and PyTorch's OpenMP workers spin for milliseconds after its
    # parallel ops, so a step timed just after the other model's would pay for that spin
    times: list[list[float]] = [[] for _ in runs]
    for r in range(rounds):
        for k in range(len(runs)):
            i = (r + k) % len(runs)
            block = [_step(*runs[i], x, y) for _ in range(BLOCK + SETTLE)]
            times[i].extend(block[SETTLE:])
    t_ref, t_conv, t_conv_opt = (statistics.median(t) for t in times)
    return t_ref, t_conv, t_conv_opt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    be = backends.current()
    threads = runner.apply_threads(args.threads, [be.name], with_torch=True)
    print(f"torch {torch.__version__}, cnnkern backend {be.name}, threads {threads}, {args.rounds} rounds")
    for batch in args.batches:
        t_ref, t_conv, t_opt = measure(batch, args.rounds)
        print(
            f"batch {batch:4d}: torch.nn {t_ref * 1e3:8.2f} ms  converted {t_conv * 1e3:8.2f} ms "
            f"(ratio {t_conv / t_ref:.2f})  converted + cnnkern.torch.optim.Adam {t_opt * 1e3:8.2f} ms "
            f"(ratio {t_opt / t_ref:.2f})"
        )


if __name__ == "__main__":
    main()
