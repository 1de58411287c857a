"""The int8 requantization epilogue: every backend EQUAL to the reference where the cpp VNNI path keeps the
sums in the GEMM's registers (groups 1, no pool or a pool window of 1x2, 2x1 or 2x2: the window's max taken
there) and where the AVX-512 requantization picks its form (the narrow one, clamping the int32 accumulators
first, where every channel's factor moves the result by steps of at most 1; the wide int64 one otherwise):
channel counts across the register tiles (16-channel blocks in fours, threes, twos, ones, with a tail),
reduction runs not a multiple of 4, odd sizes, batch 1 and > 1, and factors on both sides of 1."""

import numpy as np
import pytest

from cnnkern.backends.reference import quant as ref
from cnnkern.compress.qparams import fixed_point

from .test_conformance_quant import _codes, _layer, _q8

# n, c, h, w, k, r, s, stride, padding (t, b, l, r), pool window (= its stride)
CASES = [
    (2, 5, 9, 8, 20, 3, 3, (1, 1), (1, 1, 1, 1), (1, 2)),  # 2 blocks, a 4-channel tail; 15-byte runs
    (3, 7, 11, 9, 70, 3, 3, (1, 1), (1, 1, 1, 1), (2, 2)),  # 4 + 1 blocks, odd sizes, floor pool
    (1, 32, 9, 9, 40, 3, 3, (1, 1), (1, 1, 1, 1), (2, 2)),  # 3 blocks
    (1, 32, 14, 14, 64, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1)),  # the VGG model's shapes, batch 1
    (2, 64, 7, 7, 64, 3, 3, (1, 1), (1, 1, 1, 1), (2, 2)),
    (2, 1, 28, 28, 32, 3, 3, (1, 1), (1, 1, 1, 1), (2, 2)),  # one channel through the GEMM tiles
    (1, 3, 10, 7, 17, 2, 2, (2, 1), (0, 1, 0, 1), (2, 1)),
    (2, 12, 6, 13, 33, 3, 1, (1, 2), (1, 1, 0, 0), (1, 1)),
    # batches of 4 and more: larger work items (96 conv pixels), a tile's last cells in a part tile
    (5, 9, 13, 12, 24, 3, 3, (1, 1), (1, 1, 1, 1), (2, 2)),
    (4, 6, 11, 10, 48, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
]


def _case_id(case):
    return "x".join(map(str, case[:7])) + f"-pool{case[9][0]}x{case[9][1]}"


def _check(q8, x, wq, bias, mult, shift, geom, pool, x_zero, y_zero):
    for relu in (False, True):
        kw = dict(x_zero=x_zero, y_zero=y_zero, relu=relu, **geom)
        conv = ref.conv2d_q8_forward(x, wq, bias, mult, shift, **kw)
        np.testing.assert_array_equal(q8.conv2d_q8_forward(x, wq, bias, mult, shift, **kw), conv)
        want = ref.maxpool2d_q8_forward(conv, kernel_size=pool, stride=pool, padding=(0, 0), ceil_mode=False)
        np.testing.assert_array_equal(
            q8.conv2d_q8_pool_forward(x, wq, bias, mult, shift, **kw, pool=pool), want
        )
    return conv


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_conv2d_q8_fused_epilogue_equals_the_reference(target, case):
    q8 = _q8(target)
    n, c, h, w, k, r, s, stride, pad, pool = case
    rng = np.random.default_rng(7 * k + h)
    x = _codes(rng, (n, h, w, c))
    wq, bias, mult, shift = _layer(rng, (k, c, r, s), c * r * s)
    mult[k // 2], shift[k // 2] = 0, 1  # a channel whose factor rounded to 0
    geom = dict(stride=stride, padding=pad, dilation=(1, 1), groups=1)
    conv = _check(q8, x, wq, bias, mult, shift, geom, pool, x_zero=int(rng.integers(0, 128)), y_zero=61)
    assert len(np.unique(conv)) > 10  # the requantization spans the codes


# factor range, then the spread of the codes about the zero point and of the weights: small accumulators,
# so that the large factors still give codes between the bounds
FACTORS = [(0.5, 1.0, 4, 2), (1.0, 3.0, 4, 2), (20.0, 300.0, 1, 1)]


@pytest.mark.parametrize("factors", FACTORS, ids=lambda f: f"{f[0]}-{f[1]}")
@pytest.mark.parametrize("case", [CASES[1], CASES[3]], ids=_case_id)
def test_requantization_factors_on_both_sides_of_one(target, case, factors):
    """Factors up to 1 step the result by at most 1 (the narrow form); above 1 it jumps over codes, and a
    layer with such a channel runs the wide form. Conv (pooled or not) and dense."""
    q8 = _q8(target)
    n, c, h, w, k, r, s, stride, pad, pool = case
    low, high, dx, dw = factors
    rng = np.random.default_rng(int(high) + k)
    x = rng.integers(64 - dx, 65 + dx, size=(n, h, w, c)).astype(np.uint8)
    wq = rng.integers(-dw, dw + 1, size=(k, c, r, s)).astype(np.int8)
    bias = rng.integers(-3, 4, size=k).astype(np.int32)
    real = rng.uniform(low, high, k)
    real[0] = low  # a bound itself (1.0: steps of exactly 1)
    mult, shift = fixed_point(real)
    geom = dict(stride=stride, padding=pad, dilation=(1, 1), groups=1)
    conv = _check(q8, x, wq, bias, mult, shift, geom, pool, x_zero=64, y_zero=50)
    assert len(np.unique(conv)) > 10
    xd = np.ascontiguousarray(x.reshape(n, -1)[:, :300])
    wd = rng.integers(-dw, dw + 1, size=(k, xd.shape[1])).astype(np.int8)
    for relu in (False, True):
        kw = dict(x_zero=64, y_zero=50, relu=relu)
        want = ref.dense_q8_forward(xd, wd, bias, mult, shift, **kw)
        np.testing.assert_array_equal(q8.dense_q8_forward(xd, wd, bias, mult, shift, **kw), want)
