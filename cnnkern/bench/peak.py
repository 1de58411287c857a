"""An estimate of the machine's float32 FMA peak, for the "% of peak" column of the conv layers.

Two measured GEMM rates, the better of which is the estimate (a lower bound on the true peak: a tuned
SGEMM runs at 80-95% of it):

* NumPy's BLAS (OpenBLAS, MKL...) on a square float32 matmul, in a subprocess with ``OPENBLAS_CORETYPE``
  and ``OPENBLAS_L2_SIZE`` removed from its environment, so that a core type forced for the main process
  (to make a test reproducible, say) cannot make the estimate pessimistic; the benchmark process itself is
  left as it was. The thread count is set to the benchmark's.
* cnnkern's own packed SGEMM, through the cpp backend's ``dense_forward`` on a square problem (x·wᵀ is
  one GEMM call), under each SIMD path asked for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import ops

if TYPE_CHECKING:
    from ..backends.cpp import CppBackend

_SGEMM_SCRIPT = r"""
import json, sys, time
import numpy as np
n, seconds = int(sys.argv[1]), float(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
c = np.empty((n, n), np.float32)
np.matmul(a, b, out=c)  # starts the BLAS threads, touches the pages
best, runs, end = float("inf"), 0, time.perf_counter() + seconds
while runs < 3 or time.perf_counter() < end:
    t = time.perf_counter()
    np.matmul(a, b, out=c)
    best = min(best, time.perf_counter() - t)
    runs += 1
try:
    cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    blas = f"{cfg.get('name', '?')} {cfg.get('version', '')}".strip()
except Exception:
    blas = "unknown"
print(json.dumps({"n": n, "runs": runs, "best_s": best, "gflops": 2 * n**3 / best / 1e9, "blas": blas,
                  "numpy": np.__version__}))
"""

CLEARED_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def blas_sgemm(threads: int, n: int = 1024, seconds: float = 0.5) -> dict[str, Any]:
    """NumPy's float32 matmul rate in a clean subprocess: a dict with ``gflops`` (best run), or ``error``."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_VARIABLES}
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _SGEMM_SCRIPT, str(n), str(seconds)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        return {"error": "the sgemm subprocess ran past 300 s"}
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        return {"error": f"the sgemm subprocess failed ({proc.returncode}): {last}"}
    result: dict[str, Any] = json.loads(proc.stdout)
    result["threads"] = threads
    result["cleared"] = [v for v in CLEARED_VARIABLES if v in os.environ]
    return result


def cpp_gemm(
    backend: CppBackend, simd_paths: Sequence[str], n: int = 512, seconds: float = 0.3
) -> dict[str, float]:
    """cnnkern's SGEMM rate (cpp ``dense_forward`` on (n,n)·(n,n)ᵀ) per SIMD path: {path: gflops}."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, n), dtype=np.float32)
    w = rng.standard_normal((n, n), dtype=np.float32)
    before = backend.simd()
    rates: dict[str, float] = {}
    try:
        for path in simd_paths:
            backend.set_simd(path)
            ops.dense_forward(x, w, backend=backend)
            best, runs, end = float("inf"), 0, time.perf_counter() + seconds
            while runs < 3 or time.perf_counter() < end:
                t = time.perf_counter()
                ops.dense_forward(x, w, backend=backend)
                best = min(best, time.perf_counter() - t)
                runs += 1
            rates[path] = 2 * n**3 / best / 1e9
    finally:
        backend.set_simd(before)
    return rates


def estimate(
    threads: int, cpp_backend: CppBackend | None = None, simd_paths: Sequence[str] = (), quick: bool = False
) -> dict[str, Any]:
    """{'blas': ..., 'cpp_gemm': {path: gflops}, 'peak_gflops': the best rate measured (or None)}."""
    blas = blas_sgemm(threads, n=768 if quick else 1024, seconds=0.2 if quick else 0.5)
    cpp = cpp_gemm(cpp_backend, simd_paths, seconds=0.1 if quick else 0.3) if cpp_backend is not None else {}
    rates = [r for r in [blas.get("gflops"), *cpp.values()] if r]
    return {"blas": blas, "cpp_gemm": cpp, "peak_gflops": max(rates) if rates else None}
