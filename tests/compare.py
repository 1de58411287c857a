"""Comparison of a backend's output with the float64 reference in llm.c's form:
|out - ref| <= atol + rtol·|ref|.

Tolerances are stated for float32 and derived from the error a correct float32 implementation makes; a run
in float64 scales them by the ratio of the two machine epsilons (with a margin). NaN must sit where the
reference has NaN and infinities must match exactly: IEEE behaviour is part of the contract.
"""

import math

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7
_F64_SCALE = 1e-8  # eps64 / eps32 is 1.9e-9: float64 runs must be about 5x better still than this


def scaled(dtype, atol, rtol):
    """{atol, rtol} (keywords of :func:`assert_close`) stated for float32, for a run in ``dtype``."""
    if np.dtype(dtype) == np.float64:
        return dict(atol=atol * _F64_SCALE, rtol=rtol * _F64_SCALE)
    return dict(atol=atol, rtol=rtol)


def gemm_tol(k, dtype="float32", magnitude=1.0):
    """{atol, rtol} for a dot product of length ``k`` over inputs of unit scale.

    A float32 sum of k products of order-one terms carries a random-walk error of about eps·k^(1/2) per
    partial sum, i.e. ~eps·k at the output's scale sqrt(k); we allow 8·eps·k·magnitude absolute (blocked or
    SIMD summation orders differ from the reference's), which is still ~1e-4 of one missing or extra tap.
    """
    atol = 8 * EPS32 * max(k, 1) * magnitude
    return scaled(dtype, atol, 8 * EPS32 * math.sqrt(max(k, 1)))


def elementwise_tol(dtype="float32", ulps=8):
    """{atol, rtol} for an elementwise op: a few float32 ulps (vectorised exp/tanh approximations too)."""
    return scaled(dtype, ulps * EPS32 * 1e-1, ulps * EPS32)


def assert_close(got, want, *, atol, rtol, what, dtype=None):
    """Assert |got - want| <= atol + rtol·|want| elementwise, NaN where want is NaN, infinities equal.

    ``dtype``: the dtype ``got`` must have (the backend computes in the dtype it was given).
    """
    if dtype is not None:
        assert np.asarray(got).dtype == np.dtype(dtype), (
            f"{what}: dtype {np.asarray(got).dtype}, expected {dtype}"
        )
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    nan_want, nan_got = np.isnan(want), np.isnan(got)
    if (nan_want != nan_got).any():
        i = np.unravel_index(np.argmax(nan_want != nan_got), want.shape)
        raise AssertionError(
            f"{what}: NaN mismatch at {i}: got {got[i]!r}, expected {want[i]!r} "
            f"({int((nan_want != nan_got).sum())} positions)"
        )
    inf_want = np.isinf(want)
    if (inf_want | np.isinf(got)).any():
        diff = (np.isinf(want) | np.isinf(got)) & ~(got == want) & ~nan_want
        if diff.any():
            i = np.unravel_index(np.argmax(diff), want.shape)
            raise AssertionError(f"{what}: infinity mismatch at {i}: got {got[i]!r}, expected {want[i]!r}")
    finite = ~nan_want & ~inf_want
    with np.errstate(invalid="ignore"):  # inf - inf where both are infinite: already checked above
        err = np.where(finite, np.abs(got - want), 0.0)
    bound = atol + rtol * np.abs(np.where(finite, want, 0.0))
    bad = err > bound
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), want.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {want.size} values out of tolerance "
            f"(atol {atol:.3g}, rtol {rtol:.3g}); "
            f"worst at {i}: got {got[i]!r}, expected {want[i]!r}, |diff| {err[i]:.3g} > {bound[i]:.3g}"
        )


def assert_equal(got, want, *, what, dtype=None):
    """Bitwise-equal values (NaN equal to NaN): max-pool values and indices, integer-exact GEMMs."""
    assert_close(got, want, atol=0.0, rtol=0.0, what=what, dtype=dtype)
