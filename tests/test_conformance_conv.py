"""conv2d_forward / conv2d_backward on every backend against the float64 reference.

x (N,C,H,W), w (K,C/g,R,S), b (K,) -> y (N,K,P,Q). Random inputs are compared with a tolerance scaled with the
reduction length; small-integer inputs, where every partial sum is exact in float32, must match exactly.
"""

import pytest

from cnnkern import ops

from .cases import CONV_CASES, randint, randn
from .compare import assert_close, assert_equal, gemm_tol


def _inputs(case, make, seed):
    x = make(case.x, seed)
    w = make(case.w, seed + 1)
    b = make((case.w[0],), seed + 2) if case.bias else None
    return x, w, b


def _reduction_lengths(case, y_shape):
    """Terms summed per output of y, dx, dw/db (dx: an upper bound, every tap of every output channel)."""
    n, _, p, q = y_shape
    k, cg, r, s = case.w
    return cg * r * s, (k // case.groups) * r * s, n * p * q


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.id)
def test_conv2d_forward(target, case):
    x, w, b = _inputs(case, randn, 10)
    want = ops.conv2d_forward(x, w, b, backend="reference", **case.kwargs())
    k_y, _, _ = _reduction_lengths(case, want.shape)
    for dt in target.dtypes:
        got = target.call(
            "conv2d_forward", target.put(x, dt), target.put(w, dt), target.put(b, dt), **case.kwargs()
        )
        assert_close(target.get(got), want, **gemm_tol(k_y, dt), what=f"{target.id} {dt} y", dtype=dt)


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.id)
def test_conv2d_backward(target, case):
    x, w, _ = _inputs(case, randn, 20)
    y_shape = ops.conv2d_forward(x, w, backend="reference", **case.kwargs()).shape
    dy = randn(y_shape, 23)
    dx, dw, db = ops.conv2d_backward(dy, x, w, backend="reference", **case.kwargs())
    _, k_dx, k_dw = _reduction_lengths(case, y_shape)
    for dt in target.dtypes:
        got = target.call(
            "conv2d_backward", target.put(dy, dt), target.put(x, dt), target.put(w, dt), **case.kwargs()
        )
        gdx, gdw, gdb = (target.get(g) for g in got)
        assert_close(gdx, dx, **gemm_tol(k_dx, dt), what=f"{target.id} {dt} dx", dtype=dt)
        assert_close(gdw, dw, **gemm_tol(k_dw, dt), what=f"{target.id} {dt} dw", dtype=dt)
        assert_close(gdb, db, **gemm_tol(k_dw, dt), what=f"{target.id} {dt} db", dtype=dt)


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.id)
def test_conv2d_exact_on_small_integers(target, case):
    """Integers in [-3, 3]: every product and partial sum is an integer below 2^24, so any summation order
    gives the exact result; a misplaced tap or a wrong padding value shows as a plain mismatch."""
    x, w, b = _inputs(case, randint, 30)
    y = ops.conv2d_forward(x, w, b, backend="reference", **case.kwargs())
    dy = randint(y.shape, 33)
    dx, dw, db = ops.conv2d_backward(dy, x, w, backend="reference", **case.kwargs())
    for dt in target.dtypes:
        gy = target.call(
            "conv2d_forward", target.put(x, dt), target.put(w, dt), target.put(b, dt), **case.kwargs()
        )
        assert_equal(target.get(gy), y, what=f"{target.id} {dt} y", dtype=dt)
        got = target.call(
            "conv2d_backward", target.put(dy, dt), target.put(x, dt), target.put(w, dt), **case.kwargs()
        )
        for name, g, want in zip(("dx", "dw", "db"), got, (dx, dw, db)):
            assert_equal(target.get(g), want, what=f"{target.id} {dt} {name}", dtype=dt)


@pytest.mark.parametrize(
    "need",
    [(False, True, True), (True, False, True), (True, True, False), (False, False, True)],
    ids=["no-dx", "no-dw", "no-db", "db-only"],
)
def test_conv2d_backward_need_flags(target, need):
    """Gradients not asked for come back as None; the others are unaffected."""
    case = CONV_CASES[6]  # stride 2, padding 1
    x, w, _ = _inputs(case, randint, 40)
    dy = randint(ops.conv2d_forward(x, w, backend="reference", **case.kwargs()).shape, 43)
    want = ops.conv2d_backward(dy, x, w, backend="reference", **case.kwargs())
    flags = dict(zip(("need_dx", "need_dw", "need_db"), need))
    got = target.call(
        "conv2d_backward",
        target.put(dy, "float32"),
        target.put(x, "float32"),
        target.put(w, "float32"),
        **case.kwargs(),
        **flags,
    )
    for name, asked, g, ref in zip(("dx", "dw", "db"), need, got, want):
        if asked:
            assert_equal(target.get(g), ref, what=f"{target.id} {name}", dtype="float32")
        else:
            assert g is None, f"{target.id}: {name} was not asked for but came back as {type(g).__name__}"
