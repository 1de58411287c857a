"""batchnorm2d_forward / batchnorm2d_backward on every backend against the float64 reference.

Training: batch statistics (two-pass biased variance), running stats updated in place with momentum and the
unbiased variance; eval: the running statistics, which must stay untouched. Backward gets the reference's
mean and invstd. Tolerances scale with sqrt(n), n = N·H·W values per channel. The offset case (values around
1000 that sum exactly) catches the one-pass variance E[x²]−E[x]², which docs/design.md §3 rules out.
"""

import numpy as np
import pytest

from cnnkern import ops

from .cases import BATCHNORM_CASES, batchnorm_input, randn
from .compare import EPS32, assert_close, assert_equal, gemm_tol, scaled


def _setup(case, seed):
    c = case.x[1]
    x = batchnorm_input(case, seed)
    gamma = randn((c,), seed + 1)
    beta = randn((c,), seed + 2)
    running_mean = randn((c,), seed + 3, scale=case.scale, offset=case.offset)
    running_var = (0.5 + np.random.default_rng(seed + 4).random(c)) * case.scale**2
    running_var = running_var.astype(np.float32).astype(np.float64)
    return x, gamma, beta, running_mean, running_var


def _k(case):
    """Relative error budget of the statistics: 16 eps · sqrt(n) (offset data sum exactly, see
    batchnorm_input)."""
    n = case.x[0] * case.x[2] * case.x[3]
    return 16 * EPS32 * n**0.5


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", BATCHNORM_CASES, ids=lambda c: c.id)
def test_batchnorm2d_forward(target, case, training):
    x, gamma, beta, rm, rv = _setup(case, 1)
    if training and case.x[0] * case.x[2] * case.x[3] == 1:
        pytest.skip("n == 1 in training is an error (tested at the front door)")
    want_rm, want_rv = rm.copy(), rv.copy()
    y, mean, invstd = ops.batchnorm2d_forward(
        x,
        gamma,
        beta,
        want_rm,
        want_rv,
        training=training,
        momentum=case.momentum,
        eps=case.eps,
        backend="reference",
    )
    k = _k(case)
    for dt in target.dtypes:
        g_rm, g_rv = target.put(rm, dt), target.put(rv, dt)
        gy, gmean, ginvstd = target.call(
            "batchnorm2d_forward",
            target.put(x, dt),
            target.put(gamma, dt),
            target.put(beta, dt),
            g_rm,
            g_rv,
            training=training,
            momentum=case.momentum,
            eps=case.eps,
        )
        what = f"{target.id} {dt}"
        assert_close(target.get(gy), y, **scaled(dt, 4 * k, 4 * k), what=f"{what} y", dtype=dt)
        assert_close(target.get(gmean), mean, **scaled(dt, k * case.scale, k), what=f"{what} mean", dtype=dt)
        assert_close(target.get(ginvstd), invstd, **scaled(dt, 0.0, k), what=f"{what} invstd", dtype=dt)
        if training:
            assert_close(
                target.get(g_rm), want_rm, **scaled(dt, k * case.scale, k), what=f"{what} running_mean"
            )
            assert_close(target.get(g_rv), want_rv, **scaled(dt, 0.0, 2 * k), what=f"{what} running_var")
        else:
            assert_equal(target.get(g_rm), rm, what=f"{what} running_mean (eval must not change it)")
            assert_equal(target.get(g_rv), rv, what=f"{what} running_var (eval must not change it)")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", BATCHNORM_CASES, ids=lambda c: c.id)
def test_batchnorm2d_backward(target, case, training):
    x, gamma, beta, rm, rv = _setup(case, 2)
    if training and case.x[0] * case.x[2] * case.x[3] == 1:
        pytest.skip("n == 1 in training is an error (tested at the front door)")
    _, mean, invstd = ops.batchnorm2d_forward(
        x, gamma, beta, rm, rv, training=training, momentum=case.momentum, eps=case.eps, backend="reference"
    )
    dy = randn(case.x, 3)
    n = case.x[0] * case.x[2] * case.x[3]
    for dt in target.dtypes:
        # the saved statistics as the backend would have stored them: the reference's, in the backend dtype
        mean_dt, invstd_dt = mean.astype(dt).astype(np.float64), invstd.astype(dt).astype(np.float64)
        dx, dgamma, dbeta = ops.batchnorm2d_backward(
            dy, x, gamma, mean_dt, invstd_dt, training=training, backend="reference"
        )
        got = target.call(
            "batchnorm2d_backward",
            target.put(dy, dt),
            target.put(x, dt),
            target.put(gamma, dt),
            target.put(mean_dt, dt),
            target.put(invstd_dt, dt),
            training=training,
        )
        gdx, gdgamma, gdbeta = (target.get(g) for g in got)
        k = _k(case)
        # dx = γ·invstd/n·(n·dy − Σdy − x̂·Σ(dy·x̂)): sums of n terms, at the scale γ·invstd
        dx_scale = float(np.max(np.abs(gamma * invstd)))
        assert_close(gdx, dx, **scaled(dt, 4 * k * dx_scale, 4 * k), what=f"{target.id} {dt} dx", dtype=dt)
        assert_close(gdgamma, dgamma, **gemm_tol(n, dt), what=f"{target.id} {dt} dgamma", dtype=dt)
        assert_close(gdbeta, dbeta, **gemm_tol(n, dt), what=f"{target.id} {dt} dbeta", dtype=dt)


def test_batchnorm2d_running_stats_by_hand(target):
    """One channel holding 1 and 3 (n = 2): mean 2, biased variance 1, unbiased 2. From running (0, 1) with
    momentum 0.1: running_mean 0.1·2 = 0.2, running_var 0.9·1 + 0.1·2 = 1.1; y = ±1/sqrt(1 + eps)."""
    x = np.array([1.0, 3.0]).reshape(2, 1, 1, 1)
    rm, rv = target.put(np.zeros(1), "float32"), target.put(np.ones(1), "float32")
    y, mean, invstd = target.call(
        "batchnorm2d_forward",
        target.put(x, "float32"),
        None,
        None,
        rm,
        rv,
        training=True,
        momentum=0.1,
        eps=1e-5,
    )
    tight = dict(atol=0, rtol=4 * EPS32)
    assert_close(target.get(mean), [2.0], **tight, what=f"{target.id} mean")
    assert_close(target.get(invstd), [1 / np.sqrt(1 + 1e-5)], **tight, what=f"{target.id} invstd")
    assert_close(
        target.get(y).ravel(), [-1 / np.sqrt(1 + 1e-5), 1 / np.sqrt(1 + 1e-5)], **tight, what=f"{target.id} y"
    )
    assert_close(target.get(rm), [0.2], **tight, what=f"{target.id} running_mean")
    assert_close(target.get(rv), [1.1], **tight, what=f"{target.id} running_var (unbiased)")
