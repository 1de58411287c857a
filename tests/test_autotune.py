"""The cpp convs' per-shape algorithm choice (cnnkern/autotune.py, docs/autotune.md): every algorithm forced
on every conformance case it can run, against the float64 reference, on each SIMD path; the on-disk cache
(written, read back, keyed by CPU / ISA / threads, a corrupt one ignored with one warning); CNNKERN_AUTOTUNE=0
keeps the heuristics; ``cnnkern info`` shows the cache."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from cnnkern import autotune, ops
from cnnkern.backends import cpp
from cnnkern.ops import conv as conv_ops

from .cases import CONV_CASES, randn
from .compare import assert_close, gemm_tol
from .conftest import subprocess_env

if cpp._cpp is None:
    pytest.skip(f"cnnkern._cpp is not built here: {cpp._IMPORT_ERROR}", allow_module_level=True)
_cpp = cpp._cpp
_FWD = _cpp.conv2d_bias_act_forward_algo
# cases that between them reach every algorithm (c1, padded / strided / grouped igemm, depthwise direct)
_DET_CASES = ("conv1-b32", "basic-3x3-pad1", "stride2-pad1", "groups4-c32-k36-same-w13", "depthwise-c16")


@pytest.fixture
def spy(monkeypatch):
    """The algorithms the backend passes to the extension's forward, call by call."""
    calls = []

    def forward(*args, **kwargs):
        calls.append(kwargs["algo"])
        return _FWD(*args, **kwargs)

    monkeypatch.setattr(_cpp, "conv2d_bias_act_forward_algo", forward)
    return calls


@pytest.fixture
def tuned(monkeypatch, tmp_path):
    """Autotune on, its cache in a fresh folder, nothing remembered from earlier tests."""
    monkeypatch.setenv("CNNKERN_AUTOTUNE", "1")
    monkeypatch.setenv("CNNKERN_CACHE_DIR", str(tmp_path))
    autotune.clear_memory()
    yield tmp_path
    autotune.clear_memory()


def _canonical(case):
    """The case's arguments in the extension's forms (the front door's _geometry)."""
    x, w = np.zeros(case.x, np.float32), np.zeros(case.w, np.float32)
    stride, pad, dilation, groups, _ = conv_ops._geometry(x, w, **case.kwargs())
    return dict(stride=stride, padding=pad, dilation=dilation, groups=groups)


def _algos(case, backward):
    return _cpp.conv_algos(case.x, case.w, backward=backward, **_canonical(case))


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.id)
def test_every_algorithm_matches_the_reference(cpp_simd, case):
    """Each algorithm that can run the case, called explicitly: y, dx, dw, db within the conformance
    tolerances (the cases cross every tail: widths, channels, filters around the tile sizes)."""
    kw, ckw = case.kwargs(), _canonical(case)
    x, w = randn(case.x, 10), randn(case.w, 11)
    b = randn((case.w[0],), 12) if case.bias else None
    y = ops.conv2d_forward(x, w, b, backend="reference", **kw)
    dy = randn(y.shape, 13)
    dx, dw, db = ops.conv2d_backward(dy, x, w, backend="reference", **kw)
    n, _, p, q = y.shape
    k, cg, r, s = case.w
    f32 = [a.astype(np.float32) if a is not None else None for a in (x, w, b, dy)]
    for algo in _algos(case, False):
        got = _cpp.conv2d_bias_act_forward_algo(f32[0], f32[1], f32[2], algo=algo, **ckw)
        assert_close(got, y, **gemm_tol(cg * r * s, "float32"), what=f"{cpp_simd} {algo} y", dtype="float32")
    for algo in _algos(case, True):
        got = _cpp.conv2d_backward_algo(
            f32[3], f32[0], f32[1], need_dx=True, need_dw=True, need_db=True, algo=algo, **ckw
        )
        for name, g, want, terms in zip(
            ("dx", "dw", "db"), got, (dx, dw, db), ((k // case.groups) * r * s, n * p * q, n * p * q)
        ):
            tol = gemm_tol(terms, "float32")
            assert_close(g, want, **tol, what=f"{cpp_simd} {algo} {name}", dtype="float32")


@pytest.fixture(params=["scalar", "avx2", "avx512"])
def cpp_simd(request):
    if request.param not in _cpp.supported_simd():
        pytest.skip(f"CPU lacks {request.param}")
    before = _cpp.simd()
    _cpp.set_simd(request.param)
    yield request.param
    _cpp.set_simd(before)


@pytest.fixture
def on_avx2():
    """The AVX2 path for one test, whatever CNNKERN_SIMD forced (the scalar path runs fewer algorithms)."""
    if "avx2" not in _cpp.supported_simd():
        pytest.skip("CPU lacks AVX2: only im2col, winograd and direct run here")
    before = _cpp.simd()
    _cpp.set_simd("avx2")
    yield
    _cpp.set_simd(before)


def test_every_algorithm_is_covered_by_the_cases(on_avx2):
    """On the AVX2 path the cases above reach every algorithm, forward and backward."""
    seen = {(bw, a) for case in CONV_CASES for bw in (False, True) for a in _algos(case, bw)}
    want = {(bw, a) for bw in (False, True) for a in autotune.ALGOS}
    assert want <= seen, f"algorithms no case reaches: {sorted(want - seen)}"


def test_forced_algorithm_reaches_the_kernel(monkeypatch, spy, on_avx2):
    """CNNKERN_CONV_ALGO forces the algorithm where it can run: the bits equal the explicit call's."""
    x = randn((3, 1, 12, 19), 1).astype(np.float32)
    w = randn((9, 1, 3, 3), 2).astype(np.float32)
    kw = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)
    for algo in ("c1", "igemm", "im2col", "winograd"):
        monkeypatch.setenv("CNNKERN_CONV_ALGO", algo)
        got = ops.conv2d_forward(x, w, backend="cpp")
        np.testing.assert_array_equal(got, _FWD(x, w, algo=algo, **kw))
    assert spy == ["c1", "igemm", "im2col", "winograd"]
    monkeypatch.setenv("CNNKERN_CONV_ALGO", "direct")  # cannot run this conv: the heuristics' choice
    ops.conv2d_forward(x, w, backend="cpp")
    assert spy[-1] is None
    monkeypatch.setenv("CNNKERN_CONV_ALGO", "fft")
    with pytest.raises(ValueError, match="CNNKERN_CONV_ALGO"):
        ops.conv2d_forward(x, w, backend="cpp")
    with pytest.raises(ValueError, match="cannot run this geometry"):
        _cpp.conv2d_bias_act_forward_algo(x, w, algo="direct", **kw)


def _conv(x, w):
    return ops.conv2d_forward(x, w, backend="cpp", stride=1, padding=1)


def test_cache_written_then_read(tuned, spy):
    x, w = randn((4, 8, 10, 10), 1).astype(np.float32), randn((8, 8, 3, 3), 2).astype(np.float32)
    y = _conv(x, w)
    (path,) = tuned.glob("conv-algos-*.json")
    data = json.loads(path.read_text())
    assert data["cpu"] == autotune.cpu_model() and data["isa"] == list(_cpp.supported_simd())
    (key,) = data["entries"]
    assert f"|{_cpp.simd()}|t{_cpp.num_threads()}|" in key
    # A planted choice is read back and used (the measured one would be any of the candidates).
    for algo in _cpp.conv_algos(
        x.shape, w.shape, stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1, backward=False
    ):
        data["entries"][key] = algo
        path.write_text(json.dumps(data))
        autotune.clear_memory()
        spy.clear()
        np.testing.assert_allclose(_conv(x, w), y, rtol=1e-5, atol=1e-5)
        assert spy == [algo]


def test_cache_keyed_by_threads_and_cpu(tuned, monkeypatch):
    x, w = randn((4, 8, 10, 10), 1).astype(np.float32), randn((8, 8, 3, 3), 2).astype(np.float32)
    before = _cpp.num_threads()
    try:
        for n in (1, 2):
            _cpp.set_num_threads(n)
            _conv(x, w)
    finally:
        _cpp.set_num_threads(before)
    (path,) = tuned.glob("conv-algos-*.json")
    keys = json.loads(path.read_text())["entries"]
    assert {k.split("|")[2] for k in keys} == {"t1", "t2"}
    monkeypatch.setattr(autotune, "cpu_model", lambda: "another CPU")
    assert autotune.cache_file() != path


def test_corrupt_cache_ignored_with_one_warning(tuned):
    x, w = randn((2, 8, 9, 9), 1).astype(np.float32), randn((8, 8, 3, 3), 2).astype(np.float32)
    path = autotune.cache_file()
    path.write_text("{not json")
    with pytest.warns(RuntimeWarning, match="corrupt autotune cache"):
        y = _conv(x, w)
    np.testing.assert_allclose(
        y, ops.conv2d_forward(x, w, backend="reference", stride=1, padding=1), rtol=1e-4, atol=1e-4
    )
    assert json.loads(path.read_text())["entries"], "the corrupt file is replaced by a valid one"


def test_unwritable_cache_dir_warns_and_runs(tuned, monkeypatch):
    blocker = tuned / "file"
    blocker.write_text("")
    monkeypatch.setenv("CNNKERN_CACHE_DIR", str(blocker / "sub"))
    x, w = randn((2, 8, 9, 9), 1).astype(np.float32), randn((8, 8, 3, 3), 2).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="cannot write the autotune cache"):
        _conv(x, w)


@pytest.mark.parametrize("setting", [None, "0", "off"])
def test_autotune_off_uses_the_heuristics(tuned, monkeypatch, spy, setting):
    """Off by default (unset) and when set to a false value: the heuristics, no timing, no file."""
    if setting is None:
        monkeypatch.delenv("CNNKERN_AUTOTUNE", raising=False)
    else:
        monkeypatch.setenv("CNNKERN_AUTOTUNE", setting)
    x, w = randn((4, 8, 10, 10), 1).astype(np.float32), randn((8, 8, 3, 3), 2).astype(np.float32)
    np.testing.assert_array_equal(
        _conv(x, w), _cpp.conv2d_forward(x, w, stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1)
    )
    assert spy == [None]
    assert list(tuned.iterdir()) == []


def test_cnnkern_info_shows_the_cache(tuned):
    _conv(randn((2, 8, 9, 9), 1).astype(np.float32), randn((8, 8, 3, 3), 2).astype(np.float32))
    env = subprocess_env(CNNKERN_AUTOTUNE="1", CNNKERN_CACHE_DIR=str(tuned))
    out = subprocess.run(
        [sys.executable, "-m", "cnnkern", "info"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert f"cache {autotune.cache_file()}, 1 entries" in out and "delete that file" in out


def test_measure_keeps_the_heuristic_unless_clearly_faster():
    """The fastest candidate wins only by a margin over the heuristics' choice (listed first)."""

    def run(delays):
        def call(algo):
            time.sleep(delays[algo])
            return algo

        return call

    assert autotune._measure(["igemm", "im2col"], run({"igemm": 0.002, "im2col": 0.0})) == "im2col"
    assert autotune._measure(["igemm", "im2col"], run({"igemm": 0.0, "im2col": 0.002})) == "igemm"
    same = {"igemm": 0.003, "im2col": 0.003}
    assert autotune._measure(["igemm", "im2col"], run(same)) == "igemm"


@pytest.mark.parametrize("case", [c for c in CONV_CASES if c.id in _DET_CASES], ids=lambda c: c.id)
def test_every_algorithm_is_thread_count_independent(case):
    """docs/threads.md's rule holds for each algorithm on its own: the same bits at 1, 2 and 3 threads."""
    ckw = _canonical(case)
    x, w = (randn(s, i).astype(np.float32) for i, s in enumerate((case.x, case.w)))
    y = _FWD(x, w, algo="im2col", **ckw)
    dy = randn(y.shape, 5).astype(np.float32)
    before = _cpp.num_threads()
    got = {}
    try:
        for n in (1, 2, 3):
            _cpp.set_num_threads(n)
            for algo in _algos(case, False):
                got.setdefault(("y", algo), []).append(_FWD(x, w, algo=algo, **ckw))
            for algo in _algos(case, True):
                grads = _cpp.conv2d_backward_algo(
                    dy, x, w, need_dx=True, need_dw=True, need_db=True, algo=algo, **ckw
                )
                got.setdefault(("grads", algo), []).append(np.concatenate([g.ravel() for g in grads]))
    finally:
        _cpp.set_num_threads(before)
    for what, runs in got.items():
        for other in runs[1:]:
            np.testing.assert_array_equal(other, runs[0], err_msg=f"{case.id} {what}")
