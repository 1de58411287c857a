"""int8 inference time, interleaved: cnnkern int8, cnnkern float32 and PyTorch's x86 int8 model of the same
weights (same calibration images), on the classic CNN and the VGG-style model with batch norm (folded).

A script, not a test: ``python benchmarks/int8_speed.py [--threads 2] [--rounds 40] [--models classic,vgg]``.
Each round times one call of every contender at batch 128 and at batch 1 (several calls, averaged) in turn,
so a load that comes and goes on a shared machine hits them alike; the table gives medians over rounds and
the ratios of those medians. Timing only: the models are freshly initialised (quantized from their
calibration like trained ones); ``benchmarks/int8_ptq.py`` measures accuracy on a trained model. The SIMD
path is the environment's (``CNNKERN_SIMD=avx2`` to time the AVX2 kernels)."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, Callable

import numpy as np

CLOCK = time.perf_counter


def timed(fn: Callable[[], Any], calls: int) -> float:
    start = CLOCK()
    for _ in range(calls):
        fn()
    return (CLOCK() - start) / calls * 1e3


def compare(name: str, model: Any, q: Any, tq: Any, x: np.ndarray, rounds: int) -> None:
    """Print the medians over interleaved rounds of ``model`` (float32), ``q`` (int8) and ``tq`` (PyTorch
    int8) at batch 128 and 1, and their ratios."""
    import torch

    runs: dict[str, Callable[[], Any]] = {}
    for bs in (128, 1):
        xb, tb = x[:bs], torch.from_numpy(x[:bs].transpose(0, 3, 1, 2).copy())
        runs[f"int8 b{bs}"] = lambda xb=xb, bs=bs: q.predict(xb, batch_size=bs)
        runs[f"float32 b{bs}"] = lambda xb=xb, bs=bs: model.predict(xb, batch_size=bs)
        runs[f"torch int8 b{bs}"] = lambda tb=tb: tq(tb)
    times: dict[str, list[float]] = {key: [] for key in runs}
    with torch.no_grad():
        for fn in runs.values():  # warm-up
            fn()
        for _ in range(rounds):
            for key, fn in runs.items():
                times[key].append(timed(fn, 1 if "b128" in key else 20))
    med = {key: float(np.median(v)) for key, v in times.items()}
    print(f"{name}: medians of {rounds} interleaved rounds (ms)")
    for bs in (128, 1):
        i8, f32, t8 = med[f"int8 b{bs}"], med[f"float32 b{bs}"], med[f"torch int8 b{bs}"]
        print(
            f"  batch {bs:>3}: int8 {i8:8.3f}  float32 {f32:8.3f}  torch int8 {t8:8.3f}  "
            f"int8/torch-int8 {i8 / t8:5.2f}  int8/float32 {i8 / f32:5.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calibrate", type=int, default=1000)
    parser.add_argument("--models", default="classic,vgg")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time the process's CPU time, not wall time: with --threads 1 on a loaded machine, the work "
        "itself, without the waits for a core (not a latency once several threads run)",
    )
    args = parser.parse_args()
    if args.cpu_time:
        global CLOCK
        CLOCK = time.process_time
    os.environ["CNNKERN_NUM_THREADS"] = str(args.threads)
    import torch
    from int8_ptq import torch_int8, vgg_bn  # benchmarks/ is the script's directory

    from cnnkern import _cpp, backends, zoo
    from cnnkern.compress import quantize
    from cnnkern.datasets import fashion_mnist

    backends.get("cpp").set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    (x_train, _), _ = fashion_mnist.load_data()
    x = (x_train[: args.calibrate, ..., None] / np.float32(255)).astype(np.float32)
    clock = "CPU time" if args.cpu_time else "wall time"
    print(f"cpp SIMD path {_cpp.simd()}, int8 GEMM {_cpp.q8_gemm_path()}, threads {args.threads}, {clock}")
    for name in args.models.split(","):
        model = zoo.classic_cnn(seed=0, backend="cpp") if name == "classic" else vgg_bn()
        q = quantize(model, x, backend="cpp")
        compare(name, model, q, torch_int8(model, x.transpose(0, 3, 1, 2).copy()), x, args.rounds)


if __name__ == "__main__":
    main()
