"""How far PyTorch's own data parallelism drifts from one process, for comparison with issue 19's bound on
cnnkern.distributed (||w2 - w1|| / ||w1|| <= 1e-5 after 50 steps): DistributedDataParallel over gloo, 2
ranks x 1 thread, against one process with the same global batch; the classic CNN (PyTorch layers and
initialisation), Fashion-MNIST's bundled subset, 50 steps at global batch 16, SGD + momentum (0.05, 0.9) and
Adam (1e-3), one line per seed and optimizer.

    PYTHONPATH=. python benchmarks/ddp_drift.py [--seeds 0 1 2 3] [--dtype float32|float64]

Not a test (only ``bench_*.py`` are collected). Needs torch (CPU) and a free local port 29517.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cnnkern import torch_ref
from cnnkern.bench.shapes import CLASSIC_PARAM_SHAPES

STEPS, GLOBAL_BATCH = 50, 16


def classic_cnn(seed: int, dtype: torch.dtype) -> torch.nn.Module:
    """torch_ref's classic CNN with PyTorch's default initialisation drawn from ``seed``."""
    model = torch_ref.classic_cnn([np.zeros(s, np.float32) for s in CLASSIC_PARAM_SHAPES])
    torch.manual_seed(seed)
    for layer in model:  # in construction order, so the weights are those the constructors would draw
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    return model.to(dtype)


def train(rank: int, world: int, seed: int, opt_name: str, dtype: torch.dtype, out: str) -> None:
    """One rank's 50 steps on its contiguous shard of each global batch; rank 0 saves the weights."""
    from cnnkern.datasets import fashion_mnist

    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29517")
        dist.init_process_group("gloo", rank=rank, world_size=world)
    model = classic_cnn(seed, dtype)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    params = model.parameters()
    opt = (
        torch.optim.Adam(params, 1e-3) if opt_name == "adam" else torch.optim.SGD(params, 0.05, momentum=0.9)
    )
    (x, y), _ = fashion_mnist.load_data(subset=True)
    images = torch.from_numpy(x[: STEPS * GLOBAL_BATCH, None].astype(np.float32) / 255).to(dtype)
    labels = torch.from_numpy(y[: STEPS * GLOBAL_BATCH].astype(np.int64))
    per = GLOBAL_BATCH // world
    for step in range(STEPS):
        lo = step * GLOBAL_BATCH + rank * per
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(images[lo : lo + per]), labels[lo : lo + per]).backward()
        opt.step()
    if rank == 0:
        torch.save(torch.cat([p.detach().double().ravel() for p in model.parameters()]), out)
    if world > 1:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        one, two = os.path.join(tmp, "one.pt"), os.path.join(tmp, "two.pt")
        for seed in args.seeds:
            for opt in ("sgd", "adam"):
                train(0, 1, seed, opt, dtype, one)
                mp.spawn(train, args=(2, seed, opt, dtype, two), nprocs=2)
                w1, w2 = torch.load(one), torch.load(two)
                rel = ((w2 - w1).norm() / w1.norm()).item()
                print(
                    f"seed {seed} {opt:4s} {args.dtype}: DDP 2 ranks vs 1 process, relative {rel:.2e}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
