#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: make CuPy available, run the GPU tests, then time every
# op of the classic Fashion-MNIST CNN and its whole training step on the cuda backend against PyTorch +
# cuDNN (fp32, TF32 off), eagerly and captured as CUDA graphs, at batch 32, 128 and 1024. The table comes
# last. Run from the repository root:  bash benchmarks/gpu_check.sh
#
# Environment: CNNKERN_WHEELS=<dir> installs CuPy from local wheels (no network); CNNKERN_BENCH_BUDGET=<s>
# caps the benchmark's seconds (default 150). Exit status: non-zero if CuPy cannot be set up, the device is
# unusable, or any GPU test fails (the benchmark still runs after failed tests, for the record).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
say() { printf '\n== %s\n' "$*"; }

say "machine"
if ! command -v nvidia-smi >/dev/null; then
    echo "nvidia-smi not found: this script needs an NVIDIA GPU and driver" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
cuda_major=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\)\..*/\1/p' | head -n1)
echo "driver supports CUDA ${cuda_major:-?}"
$PY -c "import sys, numpy; print('python', sys.version.split()[0], 'numpy', numpy.__version__)"

say "cupy"
if ! $PY -c "import cupy" 2>/dev/null; then
    case "${cuda_major:-}" in
        12) pkgs="cupy-cuda12x nvidia-cuda-nvrtc-cu12" ;;
        13) pkgs="cupy-cuda13x nvidia-cuda-nvrtc" ;;
        *) echo "cannot tell the driver's CUDA version from nvidia-smi (got '${cuda_major:-}'); install cupy-cuda12x or cupy-cuda13x by hand" >&2
           exit 2 ;;
    esac
    echo "cupy missing: pip install $pkgs"
    if [ -n "${CNNKERN_WHEELS:-}" ]; then
        pip_args=(--no-index --find-links "$CNNKERN_WHEELS")
    else
        pip_args=()
    fi
    # shellcheck disable=SC2086
    if ! $PY -m pip install -q ${pip_args[@]+"${pip_args[@]}"} $pkgs; then
        echo "pip could not install $pkgs (offline? set CNNKERN_WHEELS to a folder of wheels)" >&2
        exit 2
    fi
fi
$PY - <<'EOF'
import sys
import cupy
import cnnkern.backends as b
reason = b.probe("cuda")
print("cupy", cupy.__version__, "| cuda backend:", reason or "available")
if reason:
    sys.exit(f"the cuda backend cannot run here: {reason}")
print(b.get("cuda").info())
EOF

say "gpu tests"
tests_rc=0
# CNNKERN_TEST_REQUIRE=cuda: a cuda test that would skip for want of the backend fails instead
CNNKERN_TEST_REQUIRE=cuda $PY -m pytest -m gpu -q -p no:cacheprovider tests || tests_rc=$?
if [ "$tests_rc" -ne 0 ]; then
    echo "GPU TESTS FAILED (pytest exit $tests_rc); benchmarking anyway, for the record"
fi

say "benchmark (cnnkern cuda vs torch + cuDNN, fp32, TF32 off)"
$PY - <<'EOF'
import os
import time

import cupy as cp
import numpy as np

from cnnkern.backends import get
from cnnkern.backends.cuda.graph import CapturedStep

BUDGET = float(os.environ.get("CNNKERN_BENCH_BUDGET", "150"))
START = time.perf_counter()
BATCHES = (32, 128, 1024)
be = get("cuda")
rng = np.random.default_rng(0)

torch = None
try:
    import torch as _torch

    if _torch.cuda.is_available():
        torch = _torch
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
        print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
    else:
        built = _torch.version.cuda
        why = "a CPU-only build" if built is None else f"built for CUDA {built} but sees no device"
        print(f"TORCH COLUMN MISSING: torch {_torch.__version__} is {why} (torch.cuda.is_available() is False)")
except ImportError as exc:
    print(f"TORCH COLUMN MISSING: torch not importable ({exc})")


def time_cupy(fn, reps=20):
    """Median milliseconds of fn() over reps runs, CUDA events on the current stream (after 3 warm-ups)."""
    for _ in range(3):
        fn()
    cp.cuda.Device().synchronize()
    times = []
    for _ in range(reps):
        a, b = cp.cuda.Event(), cp.cuda.Event()
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(cp.cuda.get_elapsed_time(a, b))
    return float(np.median(times))


def time_torch(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return float(np.median(times))


def dev(a):
    return cp.asarray(np.asarray(a, np.float32))


def tdev(a):
    return torch.from_numpy(np.asarray(a, np.float32)).cuda()


CONV = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)
POOL = dict(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=False)
SHAPES = [(32, 1, 3, 3), (32,), (64, 32, 3, 3), (64,), (128, 1600), (128,), (10, 128), (10,)]
rows = []  # (what, batch, cnnkern ms, cnnkern graph ms, torch ms, torch graph ms)


def op_rows(n):
    x1 = rng.standard_normal((n, 1, 28, 28))
    w1, b1 = rng.standard_normal((32, 1, 3, 3)) * 0.3, rng.standard_normal(32) * 0.1
    x2 = rng.standard_normal((n, 32, 13, 13))
    w2, b2 = rng.standard_normal((64, 32, 3, 3)) * 0.05, rng.standard_normal(64) * 0.1
    a1 = rng.standard_normal((n, 32, 26, 26))
    a2 = rng.standard_normal((n, 64, 11, 11))
    f = rng.standard_normal((n, 1600))
    w3, b3 = rng.standard_normal((128, 1600)) * 0.02, rng.standard_normal(128) * 0.1
    h = rng.standard_normal((n, 128))
    w4, b4 = rng.standard_normal((10, 128)) * 0.1, rng.standard_normal(10) * 0.1
    labels = rng.integers(0, 10, n)
    c = {k: dev(v) for k, v in dict(x1=x1, w1=w1, b1=b1, x2=x2, w2=w2, b2=b2, a1=a1, a2=a2, f=f, w3=w3, b3=b3, h=h,
                                      w4=w4, b4=b4).items()}
    cl = cp.asarray(labels)
    dy1 = dev(rng.standard_normal((n, 32, 26, 26)))
    dy2 = dev(rng.standard_normal((n, 64, 11, 11)))
    _, i1 = be.maxpool2d_forward(c["a1"], **POOL)
    _, i2 = be.maxpool2d_forward(c["a2"], **POOL)
    dp1 = dev(rng.standard_normal((n, 32, 13, 13)))
    dp2 = dev(rng.standard_normal((n, 64, 5, 5)))
    dd3 = dev(rng.standard_normal((n, 128)))
    ours = {
        "conv1 fwd+relu": lambda: be.conv2d_bias_act_forward(c["x1"], c["w1"], c["b1"], activation="relu", **CONV),
        "conv1 bwd (dw,db)": lambda: be.conv2d_backward(dy1, c["x1"], c["w1"], need_dx=False, need_dw=True,
                                                        need_db=True, **CONV),
        "pool1 fwd": lambda: be.maxpool2d_forward(c["a1"], **POOL),
        "pool1 bwd": lambda: be.maxpool2d_backward(dp1, i1, c["a1"].shape),
        "conv2 fwd+relu": lambda: be.conv2d_bias_act_forward(c["x2"], c["w2"], c["b2"], activation="relu", **CONV),
        "conv2 bwd": lambda: be.conv2d_backward(dy2, c["x2"], c["w2"], need_dx=True, need_dw=True, need_db=True,
                                                **CONV),
        "pool2 fwd": lambda: be.maxpool2d_forward(c["a2"], **POOL),
        "pool2 bwd": lambda: be.maxpool2d_backward(dp2, i2, c["a2"].shape),
        "dense1 fwd+relu": lambda: be.dense_bias_act_forward(c["f"], c["w3"], c["b3"], activation="relu"),
        "dense1 bwd": lambda: be.dense_backward(dd3, c["f"], c["w3"], need_dx=True, need_db=True),
        "dense2 fwd": lambda: be.dense_forward(c["h"], c["w4"], c["b4"]),
        "loss fwd+bwd": lambda: be.softmax_cross_entropy_backward(
            be.softmax_cross_entropy_forward(be.dense_forward(c["h"], c["w4"], c["b4"]), cl)[1], cl),
        "relu bwd (a1)": lambda: be.activation_backward(dy1, c["a1"], "relu", alpha=0.0),
    }
    theirs = {}
    if torch is not None:
        F = torch.nn.functional
        t = {k: tdev(v) for k, v in dict(x1=x1, w1=w1, b1=b1, x2=x2, w2=w2, b2=b2, a1=a1, a2=a2, f=f, w3=w3, b3=b3,
                                           h=h, w4=w4, b4=b4).items()}
        tl = torch.from_numpy(labels).cuda()
        tdy1, tdy2, tdd3 = (torch.from_numpy(cp.asnumpy(a)).cuda() for a in (dy1, dy2, dd3))
        tdp1, tdp2 = (torch.from_numpy(cp.asnumpy(a)).cuda() for a in (dp1, dp2))
        g = torch.ops.aten

        def conv_bwd(dy, x, w, dx):
            return g.convolution_backward(dy, x, w, [w.shape[0]], [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                                          [dx, True, True])

        one, total = torch.ones((), device="cuda"), torch.full((), float(n), device="cuda")

        def loss_fwd_bwd():  # log_softmax + nll_loss (mean), and their backward, as autograd would run them
            lsm = F.log_softmax(F.linear(t["h"], t["w4"], t["b4"]), 1)
            F.nll_loss(lsm, tl)
            dlsm = g.nll_loss_backward(one, lsm, tl, None, 1, -100, total)
            return g._log_softmax_backward_data(dlsm, lsm, 1, torch.float32)

        _, ti1 = F.max_pool2d(t["a1"], 2, return_indices=True)
        _, ti2 = F.max_pool2d(t["a2"], 2, return_indices=True)
        theirs = {
            "conv1 fwd+relu": lambda: F.relu(F.conv2d(t["x1"], t["w1"], t["b1"])),
            "conv1 bwd (dw,db)": lambda: conv_bwd(tdy1, t["x1"], t["w1"], False),
            "pool1 fwd": lambda: F.max_pool2d(t["a1"], 2, return_indices=True),
            "pool1 bwd": lambda: g.max_pool2d_with_indices_backward(tdp1, t["a1"], [2, 2], [2, 2], [0, 0], [1, 1],
                                                                    False, ti1),
            "conv2 fwd+relu": lambda: F.relu(F.conv2d(t["x2"], t["w2"], t["b2"])),
            "conv2 bwd": lambda: conv_bwd(tdy2, t["x2"], t["w2"], True),
            "pool2 fwd": lambda: F.max_pool2d(t["a2"], 2, return_indices=True),
            "pool2 bwd": lambda: g.max_pool2d_with_indices_backward(tdp2, t["a2"], [2, 2], [2, 2], [0, 0], [1, 1],
                                                                    False, ti2),
            "dense1 fwd+relu": lambda: F.relu(F.linear(t["f"], t["w3"], t["b3"])),
            "dense1 bwd": lambda: (tdd3 @ t["w3"], tdd3.t() @ t["f"], tdd3.sum(0)),
            "dense2 fwd": lambda: F.linear(t["h"], t["w4"], t["b4"]),
            "loss fwd+bwd": loss_fwd_bwd,
            "relu bwd (a1)": lambda: g.threshold_backward(tdy1, t["a1"], 0.0),
        }
    for name, fn in ours.items():
        ms = time_cupy(fn)
        tms = time_torch(theirs[name]) if name in theirs else None
        rows.append((name, n, ms, None, tms, None))


class CnnkernStep:
    def __init__(self, n):
        self.p = [dev(rng.standard_normal(s) * 0.05) for s in SHAPES]
        self.m = [cp.zeros(s, np.float32) for s in SHAPES]
        self.v = [cp.zeros(s, np.float32) for s in SHAPES]
        self.step = cp.zeros((), np.int64)
        self.x = dev(rng.standard_normal((n, 1, 28, 28)))
        self.labels = cp.asarray(rng.integers(0, 10, n))

    def __call__(self):
        w1, b1, w2, b2, w3, b3, w4, b4 = self.p
        a1 = be.conv2d_bias_act_forward(self.x, w1, b1, activation="relu", **CONV)
        p1, i1 = be.maxpool2d_forward(a1, **POOL)
        a2 = be.conv2d_bias_act_forward(p1, w2, b2, activation="relu", **CONV)
        p2, i2 = be.maxpool2d_forward(a2, **POOL)
        flat = p2.reshape(p2.shape[0], -1)
        a3 = be.dense_bias_act_forward(flat, w3, b3, activation="relu")
        loss, probs = be.softmax_cross_entropy_forward(be.dense_forward(a3, w4, b4), self.labels)
        d4 = be.softmax_cross_entropy_backward(probs, self.labels)
        g3, gw4, gb4 = be.dense_backward(d4, a3, w4, need_dx=True, need_db=True)
        g3 = be.activation_backward(g3, a3, "relu", alpha=0.0)
        gf, gw3, gb3 = be.dense_backward(g3, flat, w3, need_dx=True, need_db=True)
        g2 = be.activation_backward(be.maxpool2d_backward(gf.reshape(p2.shape), i2, a2.shape), a2, "relu", alpha=0.0)
        g1, gw2, gb2 = be.conv2d_backward(g2, p1, w2, need_dx=True, need_dw=True, need_db=True, **CONV)
        g1 = be.activation_backward(be.maxpool2d_backward(g1, i1, a1.shape), a1, "relu", alpha=0.0)
        _, gw1, gb1 = be.conv2d_backward(g1, self.x, w1, need_dx=False, need_dw=True, need_db=True, **CONV)
        self.step += 1
        be.adam_update_multi(self.p, [gw1, gb1, gw2, gb2, gw3, gb3, gw4, gb4], self.m, self.v, step=self.step)
        return loss


def torch_step(n):
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10)).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True)
    x = torch.randn(n, 1, 28, 28, device="cuda")
    y = torch.randint(0, 10, (n,), device="cuda")
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return step, graph.replay


for n in BATCHES:
    if time.perf_counter() - START > BUDGET:
        print(f"budget of {BUDGET:.0f}s spent: batch {n} skipped")
        break
    ok = True
    try:
        op_rows(n)
    except Exception as exc:  # report and go on: the table is the point of this run
        print(f"op benchmark at batch {n} failed: {type(exc).__name__}: {exc}")
        ok = False
    try:
        eager = CnnkernStep(n)
        ms = time_cupy(eager)
        graphed = CnnkernStep(n)
        captured = CapturedStep(graphed, warmup=2)
        gms = time_cupy(captured)
        tms = tgms = None
        if torch is not None:
            tstep, treplay = torch_step(n)
            tms, tgms = time_torch(tstep), time_torch(treplay)
        rows.append(("TRAIN STEP", n, ms, gms, tms, tgms))
    except Exception as exc:
        print(f"training-step benchmark at batch {n} failed: {type(exc).__name__}: {exc}")
        ok = False
    if not ok:
        raise SystemExit(1)


def fmt(v):
    return f"{v:9.3f}" if v is not None else "        -"


def ratio(a, b):
    return f"{a / b:6.2f}x" if a is not None and b is not None and b > 0 else "      -"


print(f"\nmedian ms per call (CUDA events), {be.info()['device']}; ratio = cnnkern / torch (lower is better)")
print(f"{'op':<20}{'batch':>6} {'cnnkern':>9} {'graph':>9} {'torch':>9} {'graph':>9}  {'ratio':>7} {'graph':>7}")
for name, n, ms, gms, tms, tgms in rows:
    print(f"{name:<20}{n:>6} {fmt(ms)} {fmt(gms)} {fmt(tms)} {fmt(tgms)}  {ratio(ms, tms)} {ratio(gms, tgms)}")
print(f"benchmark took {time.perf_counter() - START:.0f}s")
EOF

if [ "$tests_rc" -ne 0 ]; then
    echo "GPU TESTS FAILED (pytest exit $tests_rc)" >&2
    exit "$tests_rc"
fi
echo "gpu_check: all GPU tests passed"
