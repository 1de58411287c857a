"""The zoo on the cpp backend, conv autotuning on and off, interleaved in one process (docs/autotune.md).

    python benchmarks/autotune_zoo.py [--models classic,vgg_bn,...] [--batch 1,32,128] [--threads 1,2]
                                      [--repeat 9]

For each model, batch and thread count: the training step (batch > 1) and inference, each timed with
CNNKERN_AUTOTUNE=1 and =0 alternately (one sample of each per round, medians of --repeat rounds), and the
ratio on / off (below 1: the measured choice is faster). The first call with autotune on measures the
model's conv shapes; its time is printed as the one-off cost. The cache goes to a fresh temporary folder
unless CNNKERN_CACHE_DIR is set.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any, Callable

import cnnkern
from cnnkern import autotune, backends
from cnnkern.bench.zoo import ZOO, ZooInference, ZooTrainStep


def _time(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _with(setting: str, fn: Callable[[], Any]) -> float:
    os.environ["CNNKERN_AUTOTUNE"] = setting
    return _time(fn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ZOO))
    parser.add_argument("--batch", default="1,32,128")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    os.environ.setdefault("CNNKERN_CACHE_DIR", tempfile.mkdtemp(prefix="cnnkern-autotune-"))
    backend = backends.get("cpp")
    print(f"cpp simd={backend.simd()} cache={autotune.cache_file()}")
    print(f"{'model':<10} {'thr':>3} {'what':<12} {'on ms':>8} {'off ms':>8} {'on/off':>7} {'tune ms':>8}")
    for threads in (int(t) for t in args.threads.split(",")):
        cnnkern.set_num_threads(threads, backend="cpp")
        for name in args.models.split(","):
            for batch in (int(b) for b in args.batch.split(",")):
                kinds: list[ZooTrainStep | ZooInference] = [ZooInference(name, batch)]
                if batch > 1:
                    kinds.insert(0, ZooTrainStep(name, batch))
                for work in kinds:
                    fn = work.bind(backend)
                    off0 = _with("0", fn)  # warm-up: plans, scratch buffers
                    tune = _with("1", fn) - off0  # the first call with autotune on measures each conv shape
                    on, off = [], []
                    for _ in range(args.repeat):
                        on.append(_with("1", fn))
                        off.append(_with("0", fn))
                    m_on, m_off = statistics.median(on) * 1e3, statistics.median(off) * 1e3
                    what = ("train" if isinstance(work, ZooTrainStep) else "infer") + f" b{batch}"
                    print(
                        f"{name:<10} {threads:>3} {what:<12} {m_on:8.2f} {m_off:8.2f} {m_on / m_off:7.3f} "
                        f"{tune * 1e3:8.0f}",
                        flush=True,
                    )
    print(f"cache entries: {autotune.info()['entries']}")


if __name__ == "__main__":
    main()
