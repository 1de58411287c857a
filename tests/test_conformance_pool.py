"""Max and average pooling on every backend against the float64 reference.

Max pool values and argmax must match exactly, including ties (first maximum in row-major scan), NaN (NaN
wins, index of the last NaN), ±inf and windows that hold only -inf (index of the first in-bounds element).
With return_argmax=False (inference) y alone, the same values. Backward gets the reference's argmax.
"""

import numpy as np
import pytest

from cnnkern import ops

from .cases import POOL_CASES, randint, randn
from .compare import EPS32, assert_close, assert_equal, gemm_tol, scaled


def _data(kind, shape, seed):
    rng = np.random.default_rng(seed)
    if kind == "randn":
        return randn(shape, seed)
    if kind == "ties":  # three distinct values: most windows hold several copies of their maximum
        return randint(shape, seed, -1, 1)
    x = randn(shape, seed)
    if kind == "nan-inf":
        u = rng.random(shape)
        x[u < 0.08] = np.nan
        x[(u >= 0.08) & (u < 0.16)] = np.inf
        x[(u >= 0.16) & (u < 0.24)] = -np.inf
        return x
    if kind == "neg-inf-rows":  # whole rows and columns of -inf: windows with nothing but -inf and padding
        x[:, :, ::2, :] = -np.inf
        x[:, :, :, : max(1, shape[3] // 2)] = -np.inf
        return x
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["randn", "ties", "nan-inf", "neg-inf-rows"])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: c.id)
def test_maxpool2d_forward(target, case, kind):
    x = _data(kind, case.x, 1)
    y, arg = ops.maxpool2d_forward(x, backend="reference", **case.max_kwargs())
    for dt in target.dtypes:
        gy, garg = target.call("maxpool2d_forward", target.put(x, dt), **case.max_kwargs())
        assert_equal(target.get(gy), y, what=f"{target.id} {dt} y", dtype=dt)
        garg = target.get(garg)
        assert garg.dtype == np.int64, f"{target.id}: argmax dtype {garg.dtype}, expected int64"
        assert_equal(garg, arg, what=f"{target.id} {dt} argmax")
        # inference: y alone (maxpool2d_values_forward), the same values
        gy = target.call("maxpool2d_forward", target.put(x, dt), return_argmax=False, **case.max_kwargs())
        assert_equal(target.get(gy), y, what=f"{target.id} {dt} y without argmax", dtype=dt)


@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: c.id)
def test_maxpool2d_backward(target, case):
    """dy scattered to the reference's argmax, summed where windows overlap (ties make many overlaps)."""
    x = _data("ties", case.x, 2)
    y, arg = ops.maxpool2d_forward(x, backend="reference", **case.max_kwargs())
    dy = randn(y.shape, 3)
    dx = ops.maxpool2d_backward(dy, arg, case.x, backend="reference")
    kh, kw = (case.kernel_size,) * 2 if isinstance(case.kernel_size, int) else case.kernel_size
    for dt in target.dtypes:
        got = target.call("maxpool2d_backward", target.put(dy, dt), target.put(arg), case.x)
        assert_close(target.get(got), dx, **gemm_tol(kh * kw, dt), what=f"{target.id} {dt} dx", dtype=dt)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf + -inf = NaN, on purpose
@pytest.mark.parametrize("kind", ["randn", "nan-inf"])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: c.id)
def test_avgpool2d_forward(target, case, kind):
    x = _data(kind, case.x, 4)
    y = ops.avgpool2d_forward(x, backend="reference", **case.avg_kwargs())
    kh, kw = (case.kernel_size,) * 2 if isinstance(case.kernel_size, int) else case.kernel_size
    for dt in target.dtypes:
        got = target.call("avgpool2d_forward", target.put(x, dt), **case.avg_kwargs())
        # a sum of kh·kw unit-scale terms, then one division
        tol = scaled(dt, 4 * EPS32 * kh * kw, 4 * EPS32 * (kh * kw) ** 0.5)
        assert_close(target.get(got), y, **tol, what=f"{target.id} {dt} y", dtype=dt)


@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: c.id)
def test_avgpool2d_backward(target, case):
    y_shape = ops.avgpool2d_forward(np.zeros(case.x), backend="reference", **case.avg_kwargs()).shape
    dy = randn(y_shape, 5)
    dx = ops.avgpool2d_backward(dy, case.x, backend="reference", **case.avg_kwargs())
    kh, kw = (case.kernel_size,) * 2 if isinstance(case.kernel_size, int) else case.kernel_size
    for dt in target.dtypes:
        got = target.call("avgpool2d_backward", target.put(dy, dt), case.x, **case.avg_kwargs())
        assert_close(target.get(got), dx, **gemm_tol(kh * kw, dt), what=f"{target.id} {dt} dx", dtype=dt)


@pytest.mark.parametrize("x_shape", [(2, 3, 15, 14), (2, 3, 14, 15), (1, 2, 9, 9)], ids=str)
def test_avgpool2d_backward_zero_where_no_window_reaches(target, x_shape):
    """A floor-mode 2x2 pool of an odd plane leaves its last row / column out of every window: dx is exactly 0
    there, whatever the memory of dx held before (a first call's result is dropped so that the second may
    reuse its block)."""
    y_shape = x_shape[:2] + (x_shape[2] // 2, x_shape[3] // 2)
    for dt in target.dtypes:
        target.call("avgpool2d_backward", target.put(np.full(y_shape, 7.0), dt), x_shape, kernel_size=2)
        dy = randn(y_shape, 6)
        want = ops.avgpool2d_backward(dy, x_shape, kernel_size=2, backend="reference")
        got = target.get(target.call("avgpool2d_backward", target.put(dy, dt), x_shape, kernel_size=2))
        assert_close(got, want, **gemm_tol(4, dt), what=f"{target.id} {dt} dx", dtype=dt)
        assert not got[:, :, 2 * y_shape[2] :].any() and not got[:, :, :, 2 * y_shape[3] :].any()


def test_maxpool2d_nan_and_tie_rules_by_hand(target):
    """One 4x4 plane, 2x2 windows, stated by hand: ties take the first maximum, NaN wins with its last index,
    +inf beats every number, a window of -inf points at its first element."""
    nan, inf = np.nan, np.inf
    x = np.array(
        [[5.0, 5.0, nan, 1.0], [5.0, 2.0, 3.0, nan], [-inf, -inf, inf, 7.0], [-inf, -inf, 9.0, inf]]
    )[None, None]
    want_y = np.array([[5.0, nan], [-inf, inf]])[None, None]
    want_arg = np.array([[0, 7], [8, 10]])[None, None]
    y, arg = target.call("maxpool2d_forward", target.put(x, "float32"), kernel_size=2)
    assert_equal(target.get(y), want_y, what=f"{target.id} y", dtype="float32")
    assert_equal(target.get(arg), want_arg, what=f"{target.id} argmax")


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avgpool2d_divisor_by_hand(target, count_include_pad):
    """A 4x4 plane of ones, 3x3 windows, stride 2, padding 1, ceil_mode: a 3x3 output whose last row and
    column start at index 3 and overhang the padded edge. With count_include_pad the divisor is the window
    clipped to the padded edge [-1, 5): 3 rows/cols for the first two windows, 2 for the last; without, the
    real elements: 2, 3, 1. The average of ones is real/divisor."""
    real = np.array([2.0, 3.0, 1.0])
    size = np.array([3.0, 3.0, 2.0]) if count_include_pad else real
    want = (np.outer(real, real) / np.outer(size, size))[None, None]
    y = target.call(
        "avgpool2d_forward",
        target.put(np.ones((1, 1, 4, 4)), "float32"),
        kernel_size=3,
        stride=2,
        padding=1,
        ceil_mode=True,
        count_include_pad=count_include_pad,
    )
    assert_close(target.get(y), want, atol=0, rtol=2 * EPS32, what=f"{target.id} y", dtype="float32")
