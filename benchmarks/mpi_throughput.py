"""Images/s of data-parallel training of the classic CNN (Adam) at a fixed GLOBAL batch, one thread per
rank: cnnkern over MPI, or PyTorch DDP with the gloo backend started the same way (by mpirun).

    python benchmarks/mpi_throughput.py [--torch] [--batch 256] [--steps 20]                # 1 rank
    mpirun -n 2 python benchmarks/mpi_throughput.py [--torch] [--batch 256] [--steps 20]    # 2 ranks

Rank 0 prints one line: ranks, global batch, wall time per step (median of the timed steps, after one
warm-up epoch of the same length), images/s, and the CPU time per step of each rank (median): on a machine
busy with other work the wall time measures the load, while the CPU time still measures each rank's work
(one thread per rank). Not a pytest benchmark (it needs mpirun).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from cnnkern import callbacks, distributed, zoo
from cnnkern.datasets import fashion_mnist


def data(n: int) -> tuple[np.ndarray, np.ndarray]:
    (x, y), _ = fashion_mnist.load_data(subset=True)
    reps = -(-n // len(x))
    x = np.concatenate([x] * reps)[:n, :, :, None].astype(np.float32) / 255.0
    return x, np.concatenate([y] * reps)[:n].astype(np.int64)


class StepTimes(callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.last = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, batch: int, logs: object = None) -> None:
        now = (time.perf_counter(), time.process_time())
        self.times.append(now[0] - self.last[0])
        self.cpu.append(now[1] - self.last[1])
        self.last = now

    def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
        self.last = (time.perf_counter(), time.process_time())


def run_cnnkern(batch: int, steps: int) -> tuple[int, int, list[float], list[float]]:
    os.environ.setdefault("CNNKERN_NUM_THREADS", "1")
    strategy = distributed.from_environment()
    x, y = data(batch * steps)
    model = zoo.classic_cnn(seed=0, backend="cpp")
    t = StepTimes()
    model.fit(x, y, batch_size=batch, epochs=2, verbose=0, callbacks=[t], distributed=strategy)
    rank, size = (0, 1) if strategy is None else (strategy.rank, strategy.num_replicas)
    return rank, size, t.times[steps:], t.cpu[steps:]


def run_torch(batch: int, steps: int) -> tuple[int, int, list[float], list[float]]:
    import torch
    import torch.distributed as dist

    from cnnkern import torch_ref

    torch.set_num_threads(1)
    size = distributed.launched_ranks()
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0")))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group("gloo", rank=rank, world_size=size)
    weights = zoo.classic_cnn(seed=0, backend="cpp")
    weights.build()
    model = torch_ref.classic_cnn([w.copy() for w in weights.get_weights()])
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(ddp.parameters(), lr=1e-3)
    x, y = data(batch * steps)
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(y)
    times, cpu = [], []
    for epoch in range(2):
        perm = torch.from_numpy(np.random.default_rng(epoch).permutation(len(x)))
        for s in range(steps):
            start, start_cpu = time.perf_counter(), time.process_time()
            idx = perm[s * batch : (s + 1) * batch]
            idx = idx[len(idx) * rank // size : len(idx) * (rank + 1) // size]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(ddp(x[idx]), y[idx])
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    dist.destroy_process_group()
    return rank, size, times[steps:], cpu[steps:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--torch", action="store_true", help="PyTorch DDP (gloo) instead of cnnkern")
    p.add_argument("--batch", type=int, default=256, help="global batch (default 256)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    args = p.parse_args()
    rank, size, times, cpu = (run_torch if args.torch else run_cnnkern)(args.batch, args.steps)
    cpu_ms = f"{statistics.median(cpu) * 1e3:.1f}"
    if size > 1:
        from mpi4py import MPI

        cpu_ms = "/".join(MPI.COMM_WORLD.gather(cpu_ms) or [])
    if rank == 0:
        step = statistics.median(times)
        what = "torch DDP gloo" if args.torch else "cnnkern MPI"
        print(
            f"{what}: {size} rank(s) x 1 thread, global batch {args.batch}: {step * 1e3:.1f} ms/step "
            f"(median of {len(times)}), {args.batch / step:.0f} images/s; CPU ms/step per rank {cpu_ms}"
        )


if __name__ == "__main__":
    main()
