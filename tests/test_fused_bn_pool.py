"""batchnorm2d_act_maxpool_forward / _backward, the plan's batch norm + activation + max pool in training, on
every backend against the float64 reference's composition of the unfused kernels, and on cpp bit for bit
against its own unfused kernels on every SIMD path. The cases are the pool conformance cases (rows crossing
the 2x2 SIMD path's tails, overlapping, padded, ceil-mode and dilated windows, a global window), each with
every activation kind, in training and in eval."""

import numpy as np
import pytest

from cnnkern import ops

from .cases import POOL_CASES, randn
from .compare import EPS32, assert_close, assert_equal, gemm_tol, scaled

KINDS = (None, "relu", "leaky_relu", "sigmoid", "tanh")
ALPHA = 0.1
CASES = [c for c in POOL_CASES if c.x[0] * c.x[2] * c.x[3] > 1]


def _inputs(case, seed):
    c = case.x[1]
    rng = np.random.default_rng(seed)
    x = 0.3 + 1.5 * randn(case.x, seed)
    return x, randn((c,), seed + 1), randn((c,), seed + 2), randn((c,), seed + 3), 0.5 + rng.random(c)


def _pool(case):
    """The case's pool as the fused front door's keywords."""
    m = case.max_kwargs()
    return dict(
        pool_size=m["kernel_size"],
        pool_stride=m["stride"],
        pool_padding=m["padding"],
        pool_dilation=m["dilation"],
        ceil_mode=m["ceil_mode"],
    )


def _composed_forward(x, gamma, beta, rm, rv, training, kind, case, backend):
    """(y, argmax, mean, invstd, the pooled activation a) by the unfused kernels of ``backend``."""
    a, mean, invstd = ops.batchnorm2d_act_forward(
        x, gamma, beta, rm, rv, training=training, momentum=0.1, eps=1e-5, activation=kind, alpha=ALPHA,
        backend=backend,
    )  # fmt: skip
    y, argmax = ops.maxpool2d_forward(a, backend=backend, **case.max_kwargs())
    return y, argmax, mean, invstd, a


def _composed_backward(dy, y, argmax, x, gamma, mean, invstd, training, kind, backend):
    g = dy if kind is None else ops.activation_backward(dy, y, kind, alpha=ALPHA, backend=backend)
    dz = ops.maxpool2d_backward(g, argmax, x.shape, backend=backend)
    return ops.batchnorm2d_backward(dz, x, gamma, mean, invstd, training=training, backend=backend)


def _tol(case):
    """Batch norm's tolerance (sums of n values; sqrt(n)-scaled), plus an elementwise op's."""
    n = case.x[0] * case.x[2] * case.x[3]
    return 64 * EPS32 * n**0.5


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", KINDS, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_batchnorm2d_act_maxpool_forward(target, case, kind, training):
    x, gamma, beta, rm, rv = _inputs(case, 10)
    want_rm, want_rv = rm.copy(), rv.copy()
    y, _, mean, invstd, a = _composed_forward(
        x, gamma, beta, want_rm, want_rv, training, kind, case, "reference"
    )
    k = _tol(case)
    for dt in target.dtypes:
        g_rm, g_rv = target.put(rm, dt), target.put(rv, dt)
        got = target.call(
            "batchnorm2d_act_maxpool_forward",
            *(target.put(v, dt) for v in (x, gamma, beta)),
            g_rm,
            g_rv,
            training=training,
            activation=kind,
            alpha=ALPHA,
            **_pool(case),
        )
        gy, garg, gmean, ginvstd = (target.get(v) for v in got)
        what = f"{target.id} {dt} {kind}"
        assert garg.dtype == np.int64 and garg.shape == y.shape, what
        assert_close(gy, y, **scaled(dt, k, k), what=f"{what} y", dtype=dt)
        # each argmax points at a window's maximum: the reference's activation there is the pooled value
        n, c = case.x[:2]
        picked = np.take_along_axis(a.reshape(n, c, -1), garg.reshape(n, c, -1), axis=2).reshape(y.shape)
        assert_close(picked, y, **scaled(dt, k, k), what=f"{what} a[argmax]")
        assert_close(gmean, mean, **scaled(dt, k, k), what=f"{what} mean", dtype=dt)
        assert_close(ginvstd, invstd, **scaled(dt, k, k), what=f"{what} invstd", dtype=dt)
        assert_close(target.get(g_rm), want_rm, **scaled(dt, k, k), what=f"{what} running_mean", dtype=dt)
        assert_close(target.get(g_rv), want_rv, **scaled(dt, k, k), what=f"{what} running_var", dtype=dt)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", KINDS, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_batchnorm2d_act_maxpool_backward(target, case, kind, training):
    """From the reference forward's y, argmax and statistics (in the backend's dtype), the gradients equal
    the composition's: overlapping windows accumulate, then the batch norm's sums."""
    x, gamma, beta, rm, rv = _inputs(case, 20)
    y, argmax, mean, invstd, _ = _composed_forward(x, gamma, beta, rm, rv, training, kind, case, "reference")
    dy = randn(y.shape, 21)
    n = case.x[0] * case.x[2] * case.x[3]
    k = _tol(case)
    for dt in target.dtypes:
        y_dt, mean_dt, invstd_dt = (v.astype(dt).astype(np.float64) for v in (y, mean, invstd))
        want = _composed_backward(dy, y_dt, argmax, x, gamma, mean_dt, invstd_dt, training, kind, "reference")
        got = target.call(
            "batchnorm2d_act_maxpool_backward",
            target.put(dy, dt),
            target.put(y_dt, dt),
            target.put(argmax),
            *(target.put(v, dt) for v in (x, gamma, mean_dt, invstd_dt)),
            training=training,
            activation=kind,
            alpha=ALPHA,
        )
        gdx, gdgamma, gdbeta = (target.get(v) for v in got)
        what = f"{target.id} {dt} {kind}"
        dx_scale = float(np.max(np.abs(gamma * invstd)))
        assert_close(gdx, want[0], **scaled(dt, 4 * k * dx_scale, 4 * k), what=f"{what} dx", dtype=dt)
        assert_close(gdgamma, want[1], **gemm_tol(n, dt), what=f"{what} dgamma", dtype=dt)
        assert_close(gdbeta, want[2], **gemm_tol(n, dt), what=f"{what} dbeta", dtype=dt)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", KINDS, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cpp_batchnorm2d_act_maxpool_equals_its_composition(target, case, kind, training):
    """cpp pools each normalised plane where it computes it and scatters each plane's gradient into a buffer
    that feeds the batch norm's sums: the same operations in the same order as its unfused kernels, so the
    same bits, forward (values, indices, statistics, running statistics) and backward."""
    if target.name != "cpp":
        pytest.skip("compares the cpp kernels with each other (the other backends compose)")
    be = target.backend
    x, gamma, beta, rm, rv = (v.astype(np.float32) for v in _inputs(case, 30))
    want_rm, want_rv = rm.copy(), rv.copy()
    want = _composed_forward(x, gamma, beta, want_rm, want_rv, training, kind, case, be)[:4]
    got = ops.batchnorm2d_act_maxpool_forward(
        x, gamma, beta, rm, rv, training=training, activation=kind, alpha=ALPHA, backend=be, **_pool(case)
    )
    for name, g, w in zip(("y", "argmax", "mean", "invstd"), got, want):
        assert_equal(g, w, what=f"{target.id} {kind} {name}")
    assert_equal(rm, want_rm, what=f"{target.id} {kind} running_mean")
    assert_equal(rv, want_rv, what=f"{target.id} {kind} running_var")
    y, argmax, mean, invstd = want
    dy = randn(y.shape, 31).astype(np.float32)
    want_b = _composed_backward(dy, y, argmax, x, gamma, mean, invstd, training, kind, be)
    got_b = ops.batchnorm2d_act_maxpool_backward(
        dy, y, argmax, x, gamma, mean, invstd, training=training, activation=kind, alpha=ALPHA, backend=be
    )
    for name, g, w in zip(("dx", "dgamma", "dbeta"), got_b, want_b):
        assert_equal(g, w, what=f"{target.id} {kind} {name}")


def test_an_argmax_outside_the_plane_is_refused(target):
    """cpp checks each index as it scatters (its front door skips the scan); the others at the front door."""
    x, gamma, _, _, _ = _inputs(CASES[0], 40)
    n, c, h, w = x.shape
    dy = randn((n, c, h // 2, w // 2), 41)
    argmax = np.zeros(dy.shape, np.int64)
    argmax[0, 0, 0, 0] = h * w
    args = (target.put(dy, "float32"), target.put(dy, "float32"), target.put(argmax))
    stats = (target.put(v, "float32") for v in (x, gamma, np.zeros(c), np.ones(c)))
    with pytest.raises(ValueError, match="argmax"):
        target.call("batchnorm2d_act_maxpool_backward", *args, *stats, activation="relu")
