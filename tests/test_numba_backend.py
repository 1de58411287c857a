"""Numba-only behaviour: the probe without Numba, lazy import, compile caching, warmup, info, the chunked
conv path, and the fused one-channel conv + pool (conv_pool.py): when it runs, that it equals the composition
bit for bit, and thread-count independence. Kernel numerics are the shared conformance suite's job
(tests/test_conformance*.py, tests/test_fused_conv_pool.py)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_INSTALLED = "numba not installed: pip install cnnkern[numba]"


def run_python(code, env=None):
    """Run code in a fresh interpreter with the checkout on the path; return stdout (fails on error)."""
    full_env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_env.update(env or {})
    command = [sys.executable, "-c", textwrap.dedent(code)]
    proc = subprocess.run(command, capture_output=True, text=True, env=full_env, timeout=600)
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_probe_without_numba_names_the_extra():
    # a meta-path wrapper that answers "not found" for numba and defers everything else to the real finders
    out = run_python(
        f"""
        import sys

        class HideNumba:
            def __init__(self, finder):
                self.finder = finder

            def find_spec(self, name, path=None, target=None):
                if name == "numba" or name.startswith("numba."):
                    return None
                find = getattr(self.finder, "find_spec", None)
                return find(name, path, target) if find else None

        sys.meta_path[:] = [HideNumba(f) for f in sys.meta_path]
        import cnnkern
        from cnnkern.backends import probe, get
        assert probe("numba") == {NOT_INSTALLED!r}, probe("numba")
        assert "numba" not in cnnkern.available()
        try:
            get("numba")
        except cnnkern.BackendUnavailableError as exc:
            assert {NOT_INSTALLED!r} in str(exc), str(exc)
        else:
            raise AssertionError("get('numba') did not raise")
        assert "numba" not in sys.modules
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_import_cnnkern_does_not_import_numba():
    out = run_python("import sys, cnnkern, cnnkern.backends.numba; print('numba' in sys.modules)")
    assert out.strip() == "False"


numba = pytest.importorskip("numba", reason="numba not installed: pip install cnnkern[numba]")


@pytest.fixture(scope="module")
def backend():
    from cnnkern.backends import get

    return get("numba")


def test_probe_passes_with_numba_installed():
    from cnnkern.backends.numba import probe

    assert probe() is None


def test_every_kernel_loop_is_cached_and_never_fastmath(backend):
    dispatchers = backend._dispatchers()
    assert len(dispatchers) >= 20
    for d in dispatchers:
        assert d.stats.cache_path is not None, f"{d.__qualname__} lacks cache=True"
        assert not d.targetoptions.get("fastmath"), f"{d.__qualname__} uses fastmath"
        assert not os.environ.get("NUMBA_FASTMATH")


def test_warmup_times_every_kernel_and_info_reports_it(backend):
    from cnnkern.backends.base import KERNELS
    from cnnkern.backends.numba import FUSED, warmup

    seconds = warmup(dtypes=("float32",))
    assert list(seconds) == list(KERNELS) + list(FUSED)
    assert all(isinstance(s, float) and s > 0 for s in seconds.values())
    info = backend.info()
    assert info["numba"] == numba.__version__
    assert info["threads"] == numba.get_num_threads()
    done, total = info["compiled"].split("/")
    assert done == total, info["compiled"]


def test_warmup_rejects_an_unsupported_dtype():
    from cnnkern.backends.numba import warmup

    with pytest.raises(ValueError, match="dtypes"):
        warmup(dtypes=("float16",))


def test_second_process_loads_kernels_from_the_cache(tmp_path):
    code = """
        import numpy as np
        from cnnkern.backends import get
        from cnnkern.backends.numba import activation, loss
        be = get("numba")
        be.activation_forward(np.ones((2, 3), np.float32), "relu", alpha=0.01)
        be.softmax_cross_entropy_forward(np.ones((2, 3), np.float32), np.zeros(2, np.int64))
        stats = [activation._forward.stats, loss._forward.stats]
        hits = sum(sum(s.cache_hits.values()) for s in stats)
        print(hits, sum(sum(s.cache_misses.values()) for s in stats))
        """
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    hits, misses = run_python(code, env).split()
    assert (hits, misses) == ("0", "2")  # first process compiles and writes the cache
    hits, misses = run_python(code, env).split()
    assert (hits, misses) == ("2", "0")  # second process only loads


def test_conv_weight_gradient_chunking_and_threads(backend, monkeypatch):
    """dw is summed over chunks of positions into per-task partials: shorter chunks (many more of them)
    give the same gradients up to rounding, and the result does not depend on the thread count (the split
    depends on the problem size only, partials are added in task order)."""
    from cnnkern.backends.numba import conv

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6, 9, 8))
    w = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(4)
    kw = dict(stride=(2, 1), padding=(1, 0, 1, 1), dilation=(1, 2), groups=2)
    y = backend.conv2d_forward(x, w, b, **kw)
    dy = rng.standard_normal(y.shape)
    args = dict(need_dx=True, need_dw=True, need_db=True, **kw)
    grads = backend.conv2d_backward(dy, x, w, **args)
    assert 5 * y.shape[2] * y.shape[3] > 4 * 7  # JC = 7 below cuts the positions into many chunks
    monkeypatch.setattr(conv, "JC", 7)
    chunked = backend.conv2d_backward(dy, x, w, **args)
    for name, got, want in zip(("dx", "dw", "db"), chunked, grads):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13, err_msg=name)
    monkeypatch.undo()
    threads = numba.get_num_threads()
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has one thread here: the thread-count check needs two")
    try:
        numba.set_num_threads(1)
        one = backend.conv2d_backward(dy, x, w, **args)
        numba.set_num_threads(2)
        two = backend.conv2d_backward(dy, x, w, **args)
    finally:
        numba.set_num_threads(threads)
    for name, a, c in zip(("dx", "dw", "db"), one, two):
        np.testing.assert_array_equal(a, c, err_msg=name)


# (x shape, w shape, stride, padding (t, b, l, r), dilation, groups): the forward's three paths, with tails
FORWARD_PATHS = {
    "indirect-grouped-pad": ((2, 8, 9, 11), (12, 4, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2),
    "indirect-dilated-uneven-pad": ((1, 6, 10, 7), (7, 6, 3, 2), (1, 1), (2, 0, 1, 3), (2, 2), 1),
    "indirect-1x1-valid": ((3, 33, 5, 6), (17, 33, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    "direct-strided-stem": ((2, 3, 13, 12), (5, 3, 3, 3), (2, 2), (0, 1, 0, 1), (1, 1), 1),
    "direct-depthwise-stride-pair": ((1, 4, 11, 14), (8, 1, 3, 3), (2, 3), (1, 1, 2, 0), (1, 2), 4),
    "direct-stride1-pad": ((2, 2, 7, 9), (4, 1, 5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 2),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(FORWARD_PATHS), ids=str)
def test_forward_paths_equal_the_packed_gemm_bit_for_bit(backend, case, dtype):
    """The in-place (indirect) stride-1 GEMM (conv_indirect.py) and the direct plane loops on phase planes
    (conv_direct.py) take each output's products in the packed GEMM's order: the same bits as conv._conv."""
    from cnnkern.backends.numba import conv

    xs, ws, stride, pad, dil, groups = FORWARD_PATHS[case]
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    got = backend.conv2d_forward(x, w, b, stride=stride, padding=pad, dilation=dil, groups=groups)
    N, C, K, Cg, R, S, sh, sw, pt, pb, pl, pr, dh, dw, P, Q = conv._geometry(x, w, stride, pad, dil)
    want = conv._conv(conv._padded(x, pt, pb, pl, pr), w, b, groups, sh, sw, dh, dw, P, Q)
    np.testing.assert_array_equal(got, want)


def test_indirect_tile_equals_the_packed_tile_and_refuses_rows_outside():
    from cnnkern.backends.numba.gemm import MR, NR, fma_tile, fma_tile_indirect

    rng = np.random.default_rng(0)
    ap = rng.standard_normal((20, MR)).astype(np.float32)
    xf = rng.standard_normal(500).astype(np.float32)
    offs = rng.integers(0, 400, 20).astype(np.int64)
    got = np.zeros((MR, NR), np.float32)
    fma_tile_indirect(ap, xf, offs, 7, got)
    want = np.zeros((MR, NR), np.float32)
    fma_tile(ap, np.ascontiguousarray(np.stack([xf[7 + o : 7 + o + NR] for o in offs])), want)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(IndexError, match="outside"):
        fma_tile_indirect(ap, xf, offs, 500 - NR - int(offs.max()) + 1, got)
    with pytest.raises(IndexError, match="outside"):
        fma_tile_indirect(ap, xf, offs, -int(offs.min()) - 1, got)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rows_tile_equals_the_packed_tile_and_refuses_reads_outside(dtype):
    """fma_tile_rows (conv.py's dw: MR scalars a step read from x at MR row bases + one offset) gives the
    bits of fma_tile on the same scalars packed, accumulating onto what ct holds."""
    from cnnkern.backends.numba.gemm import MR, NR, fma_tile, fma_tile_rows

    rng = np.random.default_rng(1)
    xf = rng.standard_normal(600).astype(dtype)
    rows = rng.integers(0, 300, MR).astype(np.int64)
    offs = rng.integers(0, 290, 37).astype(np.int64)  # 37 steps: not a multiple of anything
    bp = rng.standard_normal((37, NR)).astype(dtype)
    start = rng.standard_normal((MR, NR)).astype(dtype)
    got = start.copy()
    fma_tile_rows(xf, rows, offs, bp, got)
    want = start.copy()
    fma_tile(np.ascontiguousarray(xf[rows[None, :] + offs[:, None]]), bp, want)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(IndexError, match="outside"):
        fma_tile_rows(xf, rows + (600 - int(rows.max()) - int(offs.max())), offs, bp, got)
    with pytest.raises(IndexError, match="outside"):
        fma_tile_rows(xf, rows - int(rows.min()) - int(offs.min()) - 1, offs, bp, got)
    with pytest.raises(ValueError, match="shapes"):
        fma_tile_rows(xf, rows[:-1], offs, bp, got)


CONV1 = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)
POOLS = {
    "2x2": dict(pool_kernel=(2, 2), pool_stride=(2, 2), pool_padding=(0, 0), pool_dilation=(1, 1)),
    "3x3-s2-p1": dict(pool_kernel=(3, 3), pool_stride=(2, 2), pool_padding=(1, 1), pool_dilation=(1, 1)),
}


def _fused_pair(be, x, w, b, kind, pool, need=(False, True, True), ceil_mode=False, composed=False):
    """(y, argmax, dx, dw, db) of conv2d_act_maxpool forward + backward on the numba backend, or of the base
    class composition of its unfused kernels when composed."""
    from cnnkern.backends.base import Backend

    impl = Backend if composed else type(be)
    rng = np.random.default_rng(1)
    act = dict(activation=kind, alpha=0.1, **CONV1)
    y, argmax = impl.conv2d_act_maxpool_forward(be, x, w, b, **act, **pool, pool_ceil_mode=ceil_mode)
    dy = rng.standard_normal(y.shape).astype(x.dtype)
    flags = dict(zip(("need_dx", "need_dw", "need_db"), need))
    return (y, argmax) + tuple(impl.conv2d_act_maxpool_backward(be, dy, y, argmax, x, w, **act, **flags))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("pool", list(POOLS), ids=str)
@pytest.mark.parametrize("kind", [None, "relu", "leaky_relu", "sigmoid", "tanh"], ids=str)
def test_fused_conv_pool_equals_the_composition_bit_for_bit(backend, kind, pool, dtype):
    """conv_pool.py sums in the composition's order (conv.py's fma chains, its dw runs and db lanes,
    activation.py's formulas), so Sequential gives the same numbers with or without linking the pair. The
    runs of positions split images here (J = 5*11*15 = 825 in 8 runs), the 3x3 pool overlaps (scatter-add)
    and has padding, and a 5x4 kernel takes the generic tap loop."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 1, 13, 17)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    ws = [rng.standard_normal((6, 1, 3, 3)).astype(dtype), rng.standard_normal((6, 1, 5, 4)).astype(dtype)]
    for w in ws:
        for ceil_mode in (False, True):
            what = f"{w.shape} ceil_mode={ceil_mode}"
            got = _fused_pair(backend, x, w, b, kind, POOLS[pool], ceil_mode=ceil_mode)
            want = _fused_pair(backend, x, w, b, kind, POOLS[pool], ceil_mode=ceil_mode, composed=True)
            for name, g, r in zip(("y", "argmax", "dx", "dw", "db"), got, want):
                if r is None:
                    assert g is None, name
                else:
                    assert g.dtype == r.dtype, name
                    np.testing.assert_array_equal(g, r, err_msg=f"{name} {what}")
            pool_args = dict(POOLS[pool], pool_ceil_mode=ceil_mode)
            y, argmax = backend.conv2d_act_maxpool_forward(
                x, w, b, activation=kind, alpha=0.1, **CONV1, **pool_args, need_argmax=False
            )
            assert argmax is None
            np.testing.assert_array_equal(y, got[0], err_msg=f"y without argmax {what}")


def test_fused_conv_pool_runs_for_one_channel_only(backend, monkeypatch):
    """The numba kernels run for a one-channel conv (groups 1, stride 1, no padding or dilation) without dx;
    anything else (three channels, padding, dx asked for) is the base class composition."""
    from cnnkern.backends.base import Backend

    def composed(*args, **kwargs):
        raise AssertionError("the base class composition ran")

    monkeypatch.setattr(Backend, "conv2d_act_maxpool_forward", composed)
    monkeypatch.setattr(Backend, "conv2d_act_maxpool_backward", composed)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 10, 10)).astype(np.float32)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    y, argmax, dx, dw, db = _fused_pair(backend, x, w, None, "relu", POOLS["2x2"])
    assert y.shape == argmax.shape == (2, 4, 4, 4) and dx is None and dw.shape == w.shape and db.shape == (4,)
    x3, w3 = np.repeat(x, 3, axis=1), np.repeat(w, 3, axis=1)
    with pytest.raises(AssertionError, match="composition ran"):
        _fused_pair(backend, x3, w3, None, "relu", POOLS["2x2"])
    y, argmax = backend.conv2d_act_maxpool_forward(
        x, w, activation="relu", alpha=0.1, **CONV1, **POOLS["2x2"], pool_ceil_mode=False
    )
    dy = np.ones_like(y)
    with pytest.raises(AssertionError, match="composition ran"):  # dx: the composition's conv2d_backward
        backend.conv2d_act_maxpool_backward(
            dy, y, argmax, x, w, activation="relu", **CONV1, need_dx=True, need_dw=True, need_db=True
        )
    with pytest.raises(AssertionError, match="composition ran"):
        backend.conv2d_act_maxpool_forward(
            x, w, **dict(CONV1, padding=(1, 1, 1, 1)), **POOLS["2x2"], pool_ceil_mode=False
        )


@pytest.mark.parametrize("pool", list(POOLS), ids=str)
def test_fused_conv_pool_does_not_depend_on_the_thread_count(backend, pool):
    """The fused backward's runs of positions (conv.py's dw_runs) depend on N*P*Q only and its partials
    are added in run order: dw and db are the same bits on 1 and 2 threads (the forward is per image)."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has one thread here: the thread-count check needs two")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 1, 28, 28)).astype(np.float32)
    w = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _fused_pair(backend, x, w, b, "relu", POOLS[pool])
        numba.set_num_threads(2)
        two = _fused_pair(backend, x, w, b, "relu", POOLS[pool])
    finally:
        numba.set_num_threads(threads)
    for name, a, c in zip(("y", "argmax", "dx", "dw", "db"), one, two):
        if a is None:
            assert c is None, name
        else:
            np.testing.assert_array_equal(a, c, err_msg=name)


@pytest.mark.parametrize("kind", ["tanh", "sigmoid"])
def test_float32_tanh_and_sigmoid_are_within_one_ulp_of_float64_everywhere(backend, kind):
    """activation.py's tanh32 / sigmoid32 (polynomial exp, no library calls): within one float32 ulp of the
    float64 function rounded to float32 over the whole range, subnormals to beyond saturation, the
    branch points (|x| = 1e-3 and 9.1 for tanh, 110 for sigmoid) crossed; NaN, +-inf and -0 as torch."""
    rng = np.random.default_rng(0)
    mags = np.geomspace(1e-45, 200, 200_001)
    pts = [1e-3, 9.1, 110.0, 0.0, np.inf]
    below = np.nextafter(np.array(pts[:3], np.float32), np.float32(-1))  # the last value before each branch
    edges = np.concatenate([below, np.array(pts, np.float32)])
    v = np.concatenate([mags, -mags, rng.uniform(-12, 12, 100_000), edges, -edges, [np.nan]]).astype(
        np.float32
    )
    got = backend.activation_forward(v, kind, alpha=0.01)
    x = v.astype(np.float64)
    with np.errstate(over="ignore"):
        want = (np.tanh(x) if kind == "tanh" else 1 / (1 + np.exp(-x))).astype(np.float32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    assert np.array_equal(np.signbit(got[ok]), np.signbit(want[ok]))
    ulps = np.abs(got[ok].view(np.int32).astype(np.int64) - want[ok].view(np.int32).astype(np.int64))
    assert ulps.max() <= 1, v[ok][ulps.argmax()]
