"""The cpp backend under every SIMD path this CPU can run: forced at import through CNNKERN_SIMD (in a fresh
interpreter, since the path is read once at import) and switched at run time; a path the CPU cannot run is a
clean error, never a crash or a silent downgrade. Sizes are swept around the vector widths (8 and 16 floats).
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cnnkern import ops

from .cases import randint, randn
from .compare import assert_close, assert_equal, elementwise_tol
from .conftest import SIMD_PATHS, load_backend, subprocess_env

_LACK = {"avx2": "CPU lacks AVX2+FMA", "avx512": "CPU lacks AVX-512"}


def _cpp():
    return load_backend("cpp")


def _fresh(code, simd):
    """Run code in a fresh interpreter with CNNKERN_SIMD=simd; return the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=subprocess_env(CNNKERN_SIMD=simd))  # fmt: skip


# A few kernels of every family on tail sizes, checked against the float64 reference inside the child.
_CHECK = textwrap.dedent("""
    import sys
    import numpy as np
    from cnnkern import backends, ops
    from tests.cases import randint, randn
    from tests.compare import assert_close, assert_equal, elementwise_tol, gemm_tol

    path = sys.argv[1]
    be = backends.get("cpp")
    assert be.simd() == path, f"CNNKERN_SIMD={path} but the backend runs {be.simd()}"
    f32 = lambda a: a.astype(np.float32)
    for n, c, h, w, k in ((1, 1, 1, 1, 1), (2, 3, 7, 9, 8), (3, 17, 9, 15, 16), (1, 16, 8, 33, 17)):
        x, wt, b = randint((n, c, h, w), 1), randint((k, c, 3, 3), 2), randint((k,), 3)
        y = ops.conv2d_forward(x, wt, b, padding=1, backend="reference")
        assert_equal(ops.conv2d_forward(f32(x), f32(wt), f32(b), padding=1, backend=be), y, what="conv y")
        dy = randint(y.shape, 4)
        for got, want in zip(ops.conv2d_backward(f32(dy), f32(x), f32(wt), padding=1, backend=be),
                             ops.conv2d_backward(dy, x, wt, padding=1, backend="reference")):
            assert_equal(got, want, what="conv backward")
    for n, i, o in ((1, 1, 1), (3, 7, 9), (2, 17, 33), (16, 33, 15)):
        x, wt, b = randint((n, i), 5), randint((o, i), 6), randint((o,), 7)
        assert_equal(ops.dense_forward(f32(x), f32(wt), f32(b), backend=be),
                     ops.dense_forward(x, wt, b, backend="reference"), what="dense y")
    x = randn((3, 33), 8, scale=5.0)
    x[0, :6] = [np.nan, np.inf, -np.inf, 1e30, -1e30, -89.0]
    for kind in ("relu", "leaky_relu", "sigmoid", "tanh"):
        assert_close(ops.activation_forward(f32(x), kind, backend=be),
                     ops.activation_forward(x, kind, backend="reference"), **elementwise_tol(), what=kind)
    x = randn((2, 17, 9, 9), 9)
    y, arg = ops.maxpool2d_forward(x, kernel_size=3, stride=2, padding=1, backend="reference")
    gy, garg = ops.maxpool2d_forward(f32(x), kernel_size=3, stride=2, padding=1, backend=be)
    assert_equal(gy, y, what="maxpool y")
    assert_equal(garg, arg, what="maxpool argmax")
    p, g, m, v = randn((33,), 10), randn((33,), 11), np.zeros(33), np.zeros(33)
    gp, gm, gv = f32(p), f32(m), f32(v)
    ops.adam_update(p, g, m, v, step=1, backend="reference")
    ops.adam_update(gp, f32(g), gm, gv, step=1, backend=be)
    assert_close(gp, p, atol=1e-6, rtol=1e-6, what="adam param")
    print("ok", be.simd())
""")


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_forced_path_runs_and_matches_the_reference(path):
    be = _cpp()
    if path not in be.supported_simd():
        pytest.skip(_LACK[path])
    proc = _fresh(_CHECK.replace("sys.argv[1]", repr(path)), path)
    assert proc.returncode == 0, (
        f"CNNKERN_SIMD={path}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    )
    assert proc.stdout.split() == ["ok", path]


_PROBE = textwrap.dedent("""
    import cnnkern
    from cnnkern import BackendUnavailableError, backends
    print(backends.probe("cpp"))
    try:
        backends.get("cpp")
        print("loaded")
    except BackendUnavailableError as exc:
        print("refused:", exc)
""")


@pytest.mark.parametrize("path", ["avx2", "avx512", "sse9"])
def test_forcing_a_path_the_cpu_lacks_is_a_clean_error(path):
    """The interpreter survives, `import cnnkern` works, and the cpp backend is refused with a reason that
    names the path; it never quietly runs another path."""
    be = _cpp()
    if path in be.supported_simd():
        pytest.skip(f"this CPU runs {path}: nothing to refuse")
    proc = _fresh(_PROBE, path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("refused:"), proc.stdout
    assert path in lines[0] and "CNNKERN_SIMD" in lines[0], lines[0]


def test_runtime_switch_reports_and_refuses():
    be = _cpp()
    start = be.simd()
    assert start in be.supported_simd() and "scalar" in be.supported_simd()
    assert be.info()["simd"] == start
    try:
        for path in be.supported_simd():
            be.set_simd(path)
            assert be.simd() == path
        for path in (p for p in SIMD_PATHS if p not in be.supported_simd()):
            with pytest.raises(RuntimeError, match=path):
                be.set_simd(path)
        before = be.simd()
        with pytest.raises(ValueError, match="simd"):
            be.set_simd("avx1024")
        assert be.simd() == before, "a refused switch must leave the path unchanged"
    finally:
        be.set_simd(start)


@pytest.fixture(params=SIMD_PATHS)
def simd_path(request):
    be = _cpp()
    if request.param not in be.supported_simd():
        pytest.skip(_LACK[request.param])
    start = be.simd()
    be.set_simd(request.param)
    yield be
    be.set_simd(start)


def test_dense_sweep_around_vector_widths(simd_path):
    """Every out width 1..33 against in widths around 8 and 16; integer inputs, so exact."""
    be = simd_path
    for fan_in in (1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33):
        for fan_out in range(1, 34):
            x, w, b = (
                randint((3, fan_in), fan_out),
                randint((fan_out, fan_in), 100 + fan_out),
                randint((fan_out,), 7),
            )
            dy = randint((3, fan_out), 200 + fan_in)
            y = ops.dense_forward(
                x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), backend=be
            )
            assert_equal(
                y,
                ops.dense_forward(x, w, b, backend="reference"),
                what=f"{be.simd()} y in={fan_in} out={fan_out}",
            )
            got = ops.dense_backward(
                dy.astype(np.float32), x.astype(np.float32), w.astype(np.float32), backend=be
            )
            for name, g, want in zip(
                ("dx", "dw", "db"), got, ops.dense_backward(dy, x, w, backend="reference")
            ):
                assert_equal(g, want, what=f"{be.simd()} {name} in={fan_in} out={fan_out}")


def test_conv_sweep_around_vector_widths(simd_path):
    """Image widths 1..33 and output channels 1..33, 3x3 padding 1; integer inputs, so exact."""
    be = simd_path
    shapes = [((2, 3, 5, w), 8) for w in range(1, 34)] + [((1, 3, 6, 9), k) for k in range(1, 34)]
    for xs, k in shapes:
        x, w = randint(xs, xs[3]), randint((k, xs[1], 3, 3), k)
        y = ops.conv2d_forward(x, w, padding=1, backend="reference")
        got = ops.conv2d_forward(x.astype(np.float32), w.astype(np.float32), padding=1, backend=be)
        assert_equal(got, y, what=f"{be.simd()} conv x {xs} K={k}")
        dy = randint(y.shape, 3)
        want = ops.conv2d_backward(dy, x, w, padding=1, backend="reference")
        got = ops.conv2d_backward(
            dy.astype(np.float32), x.astype(np.float32), w.astype(np.float32), padding=1, backend=be
        )
        for name, g, ref in zip(("dx", "dw", "db"), got, want):
            assert_equal(g, ref, what=f"{be.simd()} conv {name} x {xs} K={k}")


@pytest.mark.parametrize(
    "xs, ws, stride, padding, groups",
    [
        ((0, 16, 8, 8), (16, 1, 3, 3), 1, 1, 16),  # depthwise
        ((0, 8, 8, 8), (8, 8, 3, 3), 2, 1, 1),  # strided
        ((0, 16, 8, 8), (16, 8, 3, 3), 1, 1, 2),  # grouped
        ((0, 3, 8, 8), (4, 3, 3, 3), 1, 1, 1),  # padded, few channels
        ((0, 8, 8, 8), (8, 8, 3, 3), 1, 0, 1),  # the indirect GEMM
    ],
    ids=["depthwise", "strided", "grouped", "padded-c3", "igemm"],
)
def test_cpp_conv_empty_batch_straight_into_the_extension(simd_path, xs, ws, stride, padding, groups):
    """N = 0 past the front door (which returns early): an empty y and dx, zero dw and db, on each path."""
    be = simd_path
    x, w = np.zeros(xs, np.float32), np.ones(ws, np.float32)
    geom = dict(stride=(stride, stride), padding=(padding,) * 4, dilation=(1, 1), groups=groups)
    y = be.conv2d_forward(x, w, np.ones(ws[0], np.float32), **geom)
    assert y.shape[:2] == (0, ws[0])
    dx, dw, db = be.conv2d_backward(y, x, w, **geom, need_dx=True, need_dw=True, need_db=True)
    assert dx.shape == xs
    assert_equal(dw, np.zeros(ws), what=f"{be.simd()} dw")
    assert_equal(db, np.zeros(ws[0]), what=f"{be.simd()} db")


def test_elementwise_sweep_around_vector_widths(simd_path):
    """Activations and optimizer steps on every length 1..40 (vector body plus every possible tail)."""
    be = simd_path
    for n in range(1, 41):
        x = randn((n,), n, scale=6.0)
        for kind in ("relu", "leaky_relu", "sigmoid", "tanh"):
            want = ops.activation_forward(x, kind, backend="reference")
            y = ops.activation_forward(x.astype(np.float32), kind, backend=be)
            assert_close(y, want, **elementwise_tol(), what=f"{be.simd()} {kind} n={n}")
            dy = randn((n,), 50 + n)
            want = ops.activation_backward(dy, y.astype(np.float64), kind, backend="reference")
            got = ops.activation_backward(dy.astype(np.float32), y, kind, backend=be)
            assert_close(got, want, **elementwise_tol(), what=f"{be.simd()} d{kind} n={n}")
        p, g = randn((n,), 100 + n), randn((n,), 200 + n)
        ref = [p.copy(), np.zeros(n), np.zeros(n)]
        ours = [a.astype(np.float32) for a in ref]
        ops.adam_update(ref[0], g, ref[1], ref[2], step=2, weight_decay=0.01, backend="reference")
        ops.adam_update(
            ours[0], g.astype(np.float32), ours[1], ours[2], step=2, weight_decay=0.01, backend=be
        )
        for name, a, b in zip(("param", "m", "v"), ours, ref):
            assert_close(a, b, atol=2e-6, rtol=2e-6, what=f"{be.simd()} adam {name} n={n}")
        ref = [p.copy(), np.zeros(n)]
        ours = [a.astype(np.float32) for a in ref]
        ops.sgd_update(
            ref[0], g, ref[1], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, backend="reference"
        )
        ops.sgd_update(
            ours[0],
            g.astype(np.float32),
            ours[1],
            lr=0.1,
            momentum=0.9,
            nesterov=True,
            weight_decay=0.01,
            backend=be,
        )
        for name, a, b in zip(("param", "velocity"), ours, ref):
            assert_close(a, b, atol=2e-6, rtol=2e-6, what=f"{be.simd()} sgd {name} n={n}")


@pytest.mark.parametrize("value", ["auto", ""])
def test_auto_picks_the_widest_path_the_cpu_runs(value):
    be = _cpp()
    proc = _fresh("from cnnkern import backends; print(backends.get('cpp').simd())", value)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == be.supported_simd()[-1]


def test_batchnorm_same_bits_on_every_simd_path():
    """Batch norm's double reductions keep one association (sixteen lanes per channel, tails apart) on every
    path, so forward, backward and the running statistics give the same bits under scalar, AVX2 and AVX-512;
    planes of 1 to 40 values cross every lane tail."""
    be = _cpp()
    paths = [p for p in be.supported_simd() if p in SIMD_PATHS]
    if len(paths) < 2:
        pytest.skip(f"only the {paths[0]} path runs on this CPU: nothing to compare")
    for hw in range(1, 41):
        x = randn((3, 5, hw, 1), hw, scale=3.0) + 1.0
        dy = randn((3, 5, hw, 1), 100 + hw)
        gamma, beta = randn((5,), 200 + hw) + 2.0, randn((5,), 300 + hw)
        runs = []
        before = be.simd()
        try:
            for path in paths:
                be.set_simd(path)
                rm, rv = np.zeros(5, np.float32), np.ones(5, np.float32)
                args = (x.astype(np.float32), gamma.astype(np.float32), beta.astype(np.float32), rm, rv)
                fwd = ops.batchnorm2d_act_forward(*args, training=True, activation="relu", backend=be)
                y, mean, invstd = fwd
                grads = ops.batchnorm2d_backward(
                    dy.astype(np.float32), args[0], args[1], mean, invstd, training=True, backend=be
                )
                runs.append((y, mean, invstd, rm, rv, *grads))
        finally:
            be.set_simd(before)
        for path, run in zip(paths[1:], runs[1:]):
            for got, want in zip(run, runs[0]):
                assert_equal(got, want, what=f"batch norm, {path} against {paths[0]}, H*W={hw}")
