"""dense_forward / dense_backward on every backend against the float64 reference.

x (N,in), w (out,in), b (out,) -> y (N,out): y sums `in` products, dx sums `out`, dw and db sum N.
"""

import pytest

from cnnkern import ops

from .cases import DENSE_CASES, randint, randn
from .compare import assert_close, assert_equal, gemm_tol


def _inputs(case, make, seed):
    x = make((case.n, case.fan_in), seed)
    w = make((case.fan_out, case.fan_in), seed + 1)
    b = make((case.fan_out,), seed + 2) if case.bias else None
    dy = make((case.n, case.fan_out), seed + 3)
    return x, w, b, dy


@pytest.mark.parametrize("case", DENSE_CASES, ids=lambda c: c.id)
def test_dense_forward(target, case):
    x, w, b, _ = _inputs(case, randn, 1)
    want = ops.dense_forward(x, w, b, backend="reference")
    for dt in target.dtypes:
        got = target.call("dense_forward", target.put(x, dt), target.put(w, dt), target.put(b, dt))
        assert_close(target.get(got), want, **gemm_tol(case.fan_in, dt), what=f"{target.id} {dt} y", dtype=dt)


@pytest.mark.parametrize("case", DENSE_CASES, ids=lambda c: c.id)
def test_dense_backward(target, case):
    x, w, _, dy = _inputs(case, randn, 2)
    dx, dw, db = ops.dense_backward(dy, x, w, backend="reference")
    for dt in target.dtypes:
        gdx, gdw, gdb = (
            target.get(g)
            for g in target.call("dense_backward", target.put(dy, dt), target.put(x, dt), target.put(w, dt))
        )
        assert_close(gdx, dx, **gemm_tol(case.fan_out, dt), what=f"{target.id} {dt} dx", dtype=dt)
        assert_close(gdw, dw, **gemm_tol(case.n, dt), what=f"{target.id} {dt} dw", dtype=dt)
        assert_close(gdb, db, **gemm_tol(case.n, dt), what=f"{target.id} {dt} db", dtype=dt)


@pytest.mark.parametrize("case", DENSE_CASES, ids=lambda c: c.id)
def test_dense_exact_on_small_integers(target, case):
    """Integers in [-3, 3]: every partial sum is exact in float32, so the result must be exact."""
    x, w, b, dy = _inputs(case, randint, 3)
    y = ops.dense_forward(x, w, b, backend="reference")
    dx, dw, db = ops.dense_backward(dy, x, w, backend="reference")
    for dt in target.dtypes:
        gy = target.call("dense_forward", target.put(x, dt), target.put(w, dt), target.put(b, dt))
        assert_equal(target.get(gy), y, what=f"{target.id} {dt} y", dtype=dt)
        got = target.call("dense_backward", target.put(dy, dt), target.put(x, dt), target.put(w, dt))
        for name, g, want in zip(("dx", "dw", "db"), got, (dx, dw, db)):
            assert_equal(target.get(g), want, what=f"{target.id} {dt} {name}", dtype=dt)


@pytest.mark.parametrize(
    "need", [(False, True), (True, False), (False, False)], ids=["no-dx", "no-db", "dw-only"]
)
def test_dense_backward_need_flags(target, need):
    """Gradients not asked for come back as None; dw is always computed."""
    x, w, _, dy = _inputs(DENSE_CASES[4], randint, 4)
    want = ops.dense_backward(dy, x, w, backend="reference")
    got = target.call(
        "dense_backward",
        target.put(dy, "float32"),
        target.put(x, "float32"),
        target.put(w, "float32"),
        need_dx=need[0],
        need_db=need[1],
    )
    for name, asked, g, ref in zip(("dx", "dw", "db"), (need[0], True, need[1]), got, want):
        if asked:
            assert_equal(target.get(g), ref, what=f"{target.id} {name}", dtype="float32")
        else:
            assert g is None, f"{target.id}: {name} was not asked for but came back as {type(g).__name__}"
