"""The drop-in measurement: one training step (forward, cross-entropy, backward, Adam) of the classic CNN in
PyTorch, unconverted against ``cnnkern.torch.convert``-ed, NCHW float32, interleaved in one process (each
round times both, alternating which goes first, so they share the machine's noise alike), medians.

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


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return time.perf_counter() - start


def measure(batch: int, rounds: int, warmup: int = 3) -> tuple[float, float]:
    """Median seconds per step: (torch.nn, converted)."""
    rng = np.random.default_rng(0)
    weights = [(rng.standard_normal(s) * 0.05).astype(np.float32) for s in CLASSIC_PARAM_SHAPES]
    ref = torch_ref.classic_cnn(weights)
    conv, _ = ct.convert(copy.deepcopy(ref))
    x = torch.from_numpy(rng.random((batch, 1, 28, 28), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, batch))
    runs = [(ref, torch.optim.Adam(ref.parameters())), (conv, torch.optim.Adam(conv.parameters()))]
    for model, opt in runs:
        for _ in range(warmup):
            _step(model, opt, x, y)
    times: list[list[float]] = [[], []]
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for i in order:
            times[i].append(_step(*runs[i], x, y))
    return statistics.median(times[0]), statistics.median(times[1])


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
        t_ref, t_conv = measure(batch, args.rounds)
        print(
            f"batch {batch:4d}: torch.nn {t_ref * 1e3:8.2f} ms  converted {t_conv * 1e3:8.2f} ms  "
            f"ratio {t_conv / t_ref:.2f}"
        )


if __name__ == "__main__":
    main()
