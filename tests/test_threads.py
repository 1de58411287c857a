"""Thread counts (issue 12, items 1, 2 and 14): the limits and errors of CNNKERN_NUM_THREADS and of
cnnkern.set_num_threads, a resize that survives a thread that cannot start, and the training step under load.

The cases that once aborted or hung run in a child process with a timeout, so that a regression fails the
test instead of killing or stalling the suite.
"""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import cnnkern
from cnnkern import backends, ops

from .conftest import load_backend, subprocess_env

CHILD_TIMEOUT = 180


def _child(code, timeout=CHILD_TIMEOUT, **env):
    """Run ``code`` in a fresh interpreter; (returncode, stdout, stderr)."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return out.returncode, out.stdout, out.stderr


def _cpp():
    return load_backend("cpp")


# A conv large enough to use every thread (32 images of 32 channels), checked against the reference.
LARGE_CONV_CHECK = """
import numpy as np
from cnnkern import ops
rng = np.random.default_rng(0)
x = rng.standard_normal((32, 32, 13, 13)).astype(np.float32)
w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)
y = ops.conv2d_forward(x, w, padding=1, backend="cpp")
dx, dw, db = ops.conv2d_backward(np.ones_like(y), x, w, padding=1, backend="cpp")
ry = ops.conv2d_forward(x.astype(np.float64), w.astype(np.float64), padding=1, backend="reference")
rdx, rdw, rdb = ops.conv2d_backward(np.ones(ry.shape), x.astype(np.float64), w.astype(np.float64), padding=1,
                                    backend="reference")
for got, want in ((y, ry), (dx, rdx), (dw, rdw), (db, rdb)):
    assert np.allclose(got, want, rtol=1e-4, atol=1e-3 * np.abs(want).max()), np.abs(got - want).max()
print("conv ok")
"""


@pytest.mark.parametrize("value", ["100000", "0", "-3", "abc", "2.5", "99999999999999999999999"])
def test_bad_environment_thread_count_is_a_clear_error(value):
    """Before: 100000 aborted the process at the first kernel; 0, -3, abc, 2.5 were silently ignored."""
    _cpp()
    code = """
    import cnnkern
    from cnnkern import backends, ops
    import numpy as np
    print("probe:", backends.probe("cpp"))
    try:
        x, w = np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 3, 3), np.float32)
        ops.conv2d_forward(x, w, backend="cpp")
    except cnnkern.BackendUnavailableError as exc:
        print("error:", exc)
    """
    rc, out, err = _child(code, CNNKERN_NUM_THREADS=value)
    assert rc == 0, f"child died (rc {rc}): {err[-2000:]}"
    probe = next(line for line in out.splitlines() if line.startswith("probe:"))
    assert "CNNKERN_NUM_THREADS" in probe and f"'{value}'" in probe and "from 1 to" in probe, out
    assert any(line.startswith("error:") and "CNNKERN_NUM_THREADS" in line for line in out.splitlines()), out


@pytest.mark.parametrize("value, expect", [("3", 3), (" 2 ", 2), ("", None)])
def test_environment_thread_count_sizes_the_pool(value, expect):
    be = _cpp()
    code = """
    import os
    import cnnkern
    print("threads", cnnkern.get_num_threads("cpp"))
    """
    rc, out, err = _child(textwrap.dedent(code) + LARGE_CONV_CHECK, CNNKERN_NUM_THREADS=value)
    assert rc == 0, err[-2000:]
    want = expect if expect is not None else len(os.sched_getaffinity(0))
    assert f"threads {min(want, be.max_threads())}" in out and "conv ok" in out, out


def test_absurd_thread_count_is_refused_and_the_pool_keeps_working():
    """Before: _cpp.set_num_threads(100000) started ~32,000 threads, raised, and left the pool's busy flag
    set, so that the next set_num_threads(2) never returned."""
    _cpp()
    code = """
    import cnnkern
    from cnnkern import _cpp
    top = _cpp.max_threads()
    for call in (lambda: _cpp.set_num_threads(100000), lambda: cnnkern.set_num_threads(100000, backend="cpp"),
                 lambda: cnnkern.set_num_threads(top + 1, backend="cpp")):
        try:
            call()
        except ValueError as exc:
            assert "from 1 to" in str(exc) or "exceeds" in str(exc), exc
            print("refused:", exc)
        else:
            raise AssertionError("accepted")
    threads = int(open("/proc/self/status").read().split("Threads:")[1].split()[0])
    assert threads <= top + 16, threads  # no thread of the refused size was started
    _cpp.set_num_threads(2)
    assert _cpp.num_threads() == 2
    """
    rc, out, err = _child(textwrap.dedent(code) + LARGE_CONV_CHECK, timeout=60)
    assert rc == 0, err[-2000:]
    assert out.count("refused:") == 3 and "conv ok" in out, out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS limits thread stacks on Linux")
def test_resize_that_cannot_start_a_thread_leaves_a_working_pool():
    """A thread that cannot start (its stack cannot be mapped under RLIMIT_AS; stacks of joined threads are
    reused, so the first may start): RuntimeError naming it, the started ones joined, the busy flag
    released, the previous size kept; afterwards the pool works. Before: the next resize hung."""
    _cpp()
    code = """
    import resource
    from cnnkern import _cpp
    _cpp.set_num_threads(2)
    vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    top = _cpp.max_threads()
    resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 20), hard))  # no room for a new thread stack
    try:
        _cpp.set_num_threads(top)
    except RuntimeError as exc:
        print("error:", exc)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    print("after", _cpp.num_threads())
    _cpp.set_num_threads(2)
    assert _cpp.num_threads() == 2
    """
    rc, out, err = _child(textwrap.dedent(code) + LARGE_CONV_CHECK, timeout=60)
    assert rc == 0, err[-2000:]
    assert "error: could not start thread" in out, out
    kept = out.split("the pool keeps ")[1].split()[0]
    assert f"after {kept}" in out and "conv ok" in out, out


def test_set_and_get_num_threads(plain_target):
    name = plain_target.name
    if name not in cnnkern.threads.THREADED:
        assert cnnkern.get_num_threads(name) == 1
        with pytest.raises(ValueError, match="has no CPU thread pool"):
            cnnkern.set_num_threads(1, backend=name)
        return
    be = plain_target.backend
    before = cnnkern.get_num_threads(name)
    try:
        for n in (1, min(2, be.max_threads())):
            cnnkern.set_num_threads(n, backend=be)
            assert cnnkern.get_num_threads(be) == be.num_threads() == n
            assert be.info()["threads"] == n
    finally:
        cnnkern.set_num_threads(before, backend=name)


@pytest.mark.parametrize(
    "n, error, match",
    [
        (0, ValueError, ">= 1"),
        (-2, ValueError, ">= 1"),
        (True, TypeError, "bool"),
        (2.0, TypeError, "float"),
        ("2", TypeError, "str"),
        (2**70, ValueError, "exceeds"),
    ],
)
def test_bad_thread_counts_change_nothing(n, error, match):
    names = [name for name in cnnkern.threads.THREADED if backends.probe(name) is None]
    if not names:
        pytest.skip("neither cpp nor numba can run here")
    before = {name: cnnkern.get_num_threads(name) for name in names}
    with pytest.raises(error, match=match):
        cnnkern.set_num_threads(n)
    assert {name: cnnkern.get_num_threads(name) for name in names} == before


def test_numba_count_beyond_its_pool_names_numba_num_threads_and_changes_nothing():
    be = load_backend("numba")
    top = be.max_threads()
    with pytest.raises(ValueError, match=rf"numba started with {top} threads.*NUMBA_NUM_THREADS={top + 1}"):
        cnnkern.set_num_threads(top + 1, backend="numba")
    names = [name for name in cnnkern.threads.THREADED if backends.probe(name) is None]
    before = {name: cnnkern.get_num_threads(name) for name in names}
    with pytest.raises(ValueError, match="exceeds"):  # for every backend: all limits checked first
        cnnkern.set_num_threads(top + 1)
    assert {name: cnnkern.get_num_threads(name) for name in names} == before


def test_resize_while_another_thread_runs_kernels():
    """Resizing waits for the job in flight; kernels running meanwhile stay correct."""
    _cpp()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    want = ops.conv2d_forward(x, w, padding=1, backend="cpp")
    before = cnnkern.get_num_threads("cpp")
    errors = []
    stop = threading.Event()

    def work():
        while not stop.is_set():
            got = ops.conv2d_forward(x, w, padding=1, backend="cpp")
            if got.tobytes() != want.tobytes():
                errors.append("conv result changed while resizing")

    worker = threading.Thread(target=work)
    worker.start()
    try:
        for i in range(40):
            cnnkern.set_num_threads(1 + i % 3, backend="cpp")
    finally:
        stop.set()
        worker.join(timeout=60)
        cnnkern.set_num_threads(before, backend="cpp")
    assert not worker.is_alive(), "the kernel thread hung"
    assert errors == []


def test_show_config_reports_threads():
    from cnnkern.info import config_text

    text = config_text()
    assert "CNNKERN_NUM_THREADS=" in text
    for name in cnnkern.threads.THREADED:
        if backends.probe(name) is None:
            line = next(line for line in text.splitlines() if line.strip().startswith(name))
            assert f"threads={cnnkern.get_num_threads(name)}" in line and "max_threads=" in line, line


@pytest.mark.slow
@pytest.mark.parametrize("sanitizer", ["thread", "address,undefined"])
def test_pool_under_sanitizers(tmp_path, sanitizer):
    """csrc/runtime/threads.cpp alone, stressed (tests/native/threads_stress.cpp) under ThreadSanitizer and
    under AddressSanitizer + UBSan: no report, every result right."""
    import shutil
    from pathlib import Path

    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++ / clang++ / $CXX) to build the stress test")
    root = Path(__file__).resolve().parent.parent
    # Skip only when the toolchain lacks this sanitizer (an empty program does not build); a build error in
    # our own sources past that point is a failure, never a skip.
    probe_src = tmp_path / "probe.cpp"
    probe_src.write_text("int main() { return 0; }\n")
    probe = subprocess.run(
        [cxx, f"-fsanitize={sanitizer}", str(probe_src), "-o", str(tmp_path / "probe")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        pytest.skip(f"{cxx} cannot build with -fsanitize={sanitizer}: {probe.stderr.strip()[-300:]}")
    exe = tmp_path / "stress"
    build = subprocess.run(
        [
            cxx,
            "-std=c++17",
            "-O1",
            "-g",
            f"-fsanitize={sanitizer}",
            "-fno-sanitize-recover=all",
            f"-I{root / 'csrc'}",
            str(root / "tests/native/threads_stress.cpp"),
            str(root / "csrc/runtime/threads.cpp"),
            "-o",
            str(exe),
            "-pthread",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, f"the stress test does not build: {build.stderr.strip()[-3000:]}"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    if "unexpected memory mapping" in run.stderr:  # TSan and a kernel with high mmap randomisation
        pytest.skip(f"the {sanitizer} sanitizer cannot run on this kernel: {run.stderr.strip()[-200:]}")
    assert run.returncode == 0 and "Sanitizer" not in run.stderr, run.stdout + run.stderr[-3000:]
    assert "errors 0" in run.stdout, run.stdout


# --- under load (item 14) -----------------------------------------------------------------------------

LOAD_RATIO = 2.5  # step time with one core busy elsewhere / quiet step time, at most
LOAD_ROUNDS = 3  # a round passing is enough: other tenants of a shared CI host only ever add time

# One backend's rounds in a fresh interpreter: what ran earlier in the suite must not decide the result (an
# OpenMP runtime that PyTorch loaded, with its spinning defaults, serves Numba's loops in that process:
# docs/threads.md), nor PyTorch's workers still spinning after a cross-check. Each round: the quiet median,
# the median with a busy-loop process pinned to the last CPU, the quiet median again; the lower quiet one
# counts, so that a machine that got busier meanwhile does not pass as our load.
LOAD_PROBE = """
import json, os, statistics, subprocess, sys, time
import cnnkern
from cnnkern import backends
from cnnkern.bench import steps

be = backends.get({name!r})
cpus = sorted(os.sched_getaffinity(0))
cnnkern.set_num_threads(min(len(cpus), be.max_threads()), backend=be)
step = steps.TrainStep(32).bind(be)
for _ in range(5):  # compile / warm the caches and the output cache
    step()

def median_step(samples=15):
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)

rounds = []
for _ in range({rounds}):
    quiet = median_step()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(busy.pid, {{cpus[-1]}})
        time.sleep(0.2)
        loaded = median_step()
    finally:
        busy.kill()
        busy.wait()
    rounds.append((min(quiet, median_step()), loaded))
    if loaded / rounds[-1][0] <= {bound}:
        break
print(json.dumps({{"rounds": rounds, "idle_wait": be.info().get("idle_wait", "-")}}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity to pin the load")
def test_training_step_degrades_gracefully_under_load(plain_target):
    """A busy-loop process pinned to one of our CPUs: the classic CNN's training step (as the bench builds
    it, batch 32, as many threads as CPUs) takes at most LOAD_RATIO times its quiet time (median of 15).
    Before: numba's OpenMP workers spun while their peer waited for the busy core, 30 times slower.

    On the 2-CPU VM a healthy pool's ratio varies from 0.9 to 2 between rounds (the scheduler often leaves
    the Python thread on the busy core, where it is preempted several times a step), and a neighbour on a
    shared CI host can add more; so up to LOAD_ROUNDS rounds run and one within the bound passes. The fault
    this guards against fails every round."""
    import json

    if plain_target.name not in cnnkern.threads.THREADED:
        pytest.skip(f"{plain_target.name!r} has no CPU thread pool")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("one usable CPU: a busy process beside the step would leave it no core of its own")
    probe = LOAD_PROBE.format(name=plain_target.name, rounds=LOAD_ROUNDS, bound=LOAD_RATIO)
    rc, out, err = _child(probe, timeout=600)
    assert rc == 0, err[-3000:]
    got = json.loads(out.strip().splitlines()[-1])
    shown = ", ".join(f"{l * 1e3:.1f} ms loaded vs {q * 1e3:.1f} ms quiet" for q, l in got["rounds"])
    print(f"{plain_target.name} ({got['idle_wait']}): {shown}")
    assert min(l / q for q, l in got["rounds"]) <= LOAD_RATIO, (
        f"{plain_target.name} ({got['idle_wait']}), every round over {LOAD_RATIO}: {shown}"
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PyTorch brings GNU OpenMP on Linux")
def test_numba_reports_the_openmp_runtime_that_pytorch_loaded_first():
    """info()["idle_wait"] tells the settings that hold: with PyTorch imported first, its libgomp serves
    Numba's loops with the defaults it read at load, and cnnkern's passive setting does not hold."""
    if backends.probe("numba") is not None:
        pytest.skip(f"numba backend unavailable: {backends.probe('numba')}")
    try:
        import torch  # noqa: F401
    except ImportError:
        pytest.skip("torch not installed (pip install torch): the case needs PyTorch's OpenMP runtime")
    code = "import torch\nfrom cnnkern import backends\nprint(backends.get('numba').info()['idle_wait'])\n"
    env = subprocess_env()
    env.pop("OMP_WAIT_POLICY", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    said = out.stdout.strip()
    assert said.startswith("the defaults of ") and "gomp" in said and "OMP_WAIT_POLICY=PASSIVE" in said, said


def test_bench_starts_numba_with_cnnkern_threading_settings():
    """`cnnkern bench`'s thread setting used to start Numba's threading layer directly
    (numba.set_num_threads), before cnnkern configured it: OpenMP's spinning defaults then held for the whole
    process, and the load test above, run after the bench tests, measured 2.8x."""
    if backends.probe("numba") is not None:
        pytest.skip(f"numba backend unavailable: {backends.probe('numba')}")
    code = (
        "from cnnkern import backends\n"
        "from cnnkern.bench import runner\n"
        "runner.apply_threads(1, ['numba'], False)\n"
        "print(backends.get('numba').info()['idle_wait'])\n"
    )
    env = subprocess_env()
    env.pop("OMP_WAIT_POLICY", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "passive", out.stdout


PINNING_PROBE = """
import json, os, threading
from cnnkern import _cpp
_cpp.set_num_threads({n})  # starts the pool
main = threading.get_native_id()
masks = [sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task") if int(t) != main]
print(json.dumps({{"pinned": _cpp.threads_pinned(), "masks": masks}}))
"""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs os.sched_getaffinity (Linux)")
@pytest.mark.parametrize("pin_env", ["", "0"])
def test_workers_are_pinned_one_per_cpu_unless_turned_off(pin_env):
    """docs/threads.md, "Placement": worker i runs on the i-th CPU of the mask while the pool fits the CPUs;
    CNNKERN_PIN_THREADS=0 leaves them to the scheduler; an oversubscribed pool is never pinned."""
    import json

    _cpp()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip(f"needs 2+ CPUs in the affinity mask to pin a worker, this process has {len(cpus)}")
    env = {"CNNKERN_PIN_THREADS": pin_env} if pin_env else {}
    want_pinned = pin_env != "0"
    for n, pinned in ((len(cpus), want_pinned), (len(cpus) + 1, False)):
        rc, out, err = _child(PINNING_PROBE.format(n=n), **env)
        assert rc == 0, err
        got = json.loads(out)
        assert got["pinned"] is pinned, (n, got)
        # Threads of other libraries (if any started) keep the whole mask: single-CPU masks are the workers'.
        single = sorted(m for m in got["masks"] if len(m) == 1)
        assert single == ([[c] for c in cpus[1:n]] if pinned else []), (n, got)
