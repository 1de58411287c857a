"""activation_forward / activation_backward on every backend against the float64 reference.

Elementwise, so the tolerance is a few float32 ulps. The 'specials' cases plant NaN, ±inf, ±1e30, ±88/89
(where float32 exp overflows), ±1e4 and tiny values: a naive e^x/(1+e^x) or (e^2x−1)/(e^2x+1) returns NaN
there.
Backward works from the forward output y (the reference's, cast to the backend dtype).
"""

import numpy as np
import pytest

from cnnkern import ops

from .cases import ACTIVATION_CASES, randn
from .compare import assert_close, elementwise_tol

KINDS = [("relu", 0.01), ("leaky_relu", 0.01), ("leaky_relu", 0.2), ("sigmoid", 0.01), ("tanh", 0.01)]
KIND_IDS = ["relu", "leaky_relu", "leaky_relu-alpha0.2", "sigmoid", "tanh"]


def _input(case, seed):
    x = randn(case.shape, seed, scale=4.0).reshape(-1)
    x[: len(case.specials)] = case.specials
    return x.astype(np.float32).astype(np.float64).reshape(case.shape)


@pytest.mark.parametrize("kind,alpha", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("case", ACTIVATION_CASES, ids=lambda c: c.id)
def test_activation_forward(target, case, kind, alpha):
    x = _input(case, 1)
    want = ops.activation_forward(x, kind, alpha=alpha, backend="reference")
    for dt in target.dtypes:
        got = target.call("activation_forward", target.put(x, dt), kind, alpha=alpha)
        assert_close(target.get(got), want, **elementwise_tol(dt), what=f"{target.id} {dt} {kind}", dtype=dt)


@pytest.mark.parametrize("kind,alpha", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("case", ACTIVATION_CASES, ids=lambda c: c.id)
def test_activation_backward(target, case, kind, alpha):
    """y from the reference forward (NaN outputs left out: the contract does not fix dx where y is NaN)."""
    x = _input(case, 2)
    x[np.isnan(x)] = 0.5
    y = ops.activation_forward(x, kind, alpha=alpha, backend="reference")
    dy = randn(case.shape, 3)
    for dt in target.dtypes:
        y_dt = y.astype(dt).astype(np.float64)
        want = ops.activation_backward(dy, y_dt, kind, alpha=alpha, backend="reference")
        got = target.call("activation_backward", target.put(dy, dt), target.put(y_dt, dt), kind, alpha=alpha)
        assert_close(target.get(got), want, **elementwise_tol(dt), what=f"{target.id} {dt} d{kind}", dtype=dt)
