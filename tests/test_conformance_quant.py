"""The int8 kernels (cnnkern.compress): the reference (the specification) against a plain-loop integer
model of it, and every backend's kernels EQUAL to the reference (integers: no tolerance), on shapes that
cross every SIMD tail (reduction lengths not a multiple of 4, channel counts not a multiple of 16)."""

import numpy as np
import pytest

from cnnkern.backends.reference import quant as ref
from cnnkern.compress.qparams import fixed_point

CONV_CASES = [
    # n, c, h, w, k, r, s, stride, padding (t, b, l, r), dilation, groups
    (2, 3, 7, 6, 5, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (1, 1, 9, 9, 17, 3, 3, (2, 1), (0, 1, 2, 0), (1, 2), 1),
    (2, 4, 6, 7, 6, 2, 3, (1, 2), (0, 0, 0, 0), (1, 1), 2),
    (1, 33, 5, 5, 35, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),
    (1, 6, 8, 8, 48, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (2, 8, 6, 5, 16, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),  # 4-byte channel runs (CUDA's dp4a)
    # the cpp GEMM's register tiles (16-channel blocks in groups of 4, then 3 / 2 / 1; rows in 6s and 8s)
    # and layouts (taps read in place from the padded input; short im2col rows for one channel)
    (1, 20, 9, 11, 70, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (3, 12, 7, 9, 50, 3, 3, (2, 2), (0, 0, 0, 0), (1, 1), 1),
    (2, 1, 13, 11, 40, 3, 3, (1, 1), (0, 0, 0, 0), (1, 1), 1),
    (1, 1, 12, 10, 33, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (1, 64, 5, 7, 64, 3, 3, (1, 1), (0, 1, 1, 0), (1, 1), 1),
    (1, 17, 6, 6, 9, 2, 2, (1, 1), (0, 0, 0, 0), (2, 1), 1),
]


def _layer(rng, k, j, x_zero=None):
    """Random int8 weights (K, ...) with extremes, int32 bias, requantization for a reduction of j."""
    w = rng.integers(-127, 128, size=k, dtype=np.int64).astype(np.int8)
    bias = rng.integers(-(1 << 14), 1 << 14, size=k[0]).astype(np.int32)
    mult, shift = fixed_point(rng.uniform(0.2, 4.0, k[0]) / (j * 40))
    return w, bias, mult, shift


def _codes(rng, shape):
    x = rng.integers(0, 128, size=shape).astype(np.uint8)
    x.reshape(-1)[:3] = (0, 127, 127)
    return x


def _requant_loop(acc, m, s, y_zero, relu):
    v = y_zero + ((int(acc) * int(m) + (1 << (int(s) - 1))) >> int(s))
    return min(max(v, y_zero if relu else 0), 127)


def test_reference_conv_is_the_loop_definition():
    rng = np.random.default_rng(0)
    n, c, h, w, k, r, s, st, (t, b, le, ri), dil, g = CONV_CASES[2]
    x = _codes(rng, (n, h, w, c))
    wq, bias, mult, shift = _layer(rng, (k, c // g, r, s), c // g * r * s)
    geom = dict(stride=st, padding=(t, b, le, ri), dilation=dil, groups=g)
    y = ref.conv2d_q8_forward(x, wq, bias, mult, shift, x_zero=5, y_zero=9, relu=True, **geom)
    acc = ref.conv2d_q8_acc(x, wq, bias, x_zero=5, **geom)
    kg, cg = k // g, c // g
    for ni, p, q, ki in np.ndindex(*y.shape):
        total = int(bias[ki])
        for ci in range(cg):
            for i in range(r):
                for j in range(s):
                    hh, ww = p * st[0] - t + i * dil[0], q * st[1] - le + j * dil[1]
                    if 0 <= hh < h and 0 <= ww < w:
                        total += (int(x[ni, hh, ww, (ki // kg) * cg + ci]) - 5) * int(wq[ki, ci, i, j])
        assert acc[ni, p, q, ki] == total
        assert y[ni, p, q, ki] == _requant_loop(total, mult[ki], shift[ki], 9, True)


def test_requantize_rounds_half_up_and_clamps():
    acc = np.array([[3, -3, 5, -5, 10**6, -(10**6)]], np.int32)
    one_half = np.full(6, 1 << 30, np.int32), np.full(6, 32, np.int32)  # a factor of 1/4
    y = ref.requantize(acc, *one_half, y_zero=0, relu=False, axis=1)
    assert y.tolist() == [[1, 0, 1, 0, 127, 0]]  # 0.75 -> 1, -0.75 -> -1 -> 0 (clamped), 1.25 -> 1
    y = ref.requantize(
        np.array([[2, -2, 6, -6]], np.int32), *(a[:4] for a in one_half), y_zero=10, relu=False, axis=1
    )
    assert y.tolist() == [[11, 10, 12, 9]]  # 0.5 -> 1 and -0.5 -> 0 (ties up), 1.5 -> 2, -1.5 -> -1
    y = ref.requantize(
        np.array([[-6, 6]], np.int32), *(a[:2] for a in one_half), y_zero=10, relu=True, axis=1
    )
    assert y.tolist() == [[10, 12]]


def _refuses_codes_outside_the_format(q8, rng):
    """Codes, weights, requantization constants and zero points outside the format raise, naming them."""
    w, bias, m, s = _layer(rng, (4, 8), 8)
    x = _codes(rng, (2, 8))
    x[1, 1] = 200
    with pytest.raises(ValueError, match="7-bit codes"):
        q8.dense_q8_forward(x, w, bias, m, s, x_zero=0, y_zero=0, relu=False)
    x[1, 1] = 0
    w[2, 3] = -128
    with pytest.raises(ValueError, match="-128"):
        q8.dense_q8_acc(x, w, bias, x_zero=0)
    w[2, 3] = 0
    with pytest.raises(ValueError, match="multiplier must be 0 or in"):
        q8.dense_q8_forward(x, w, bias, m // 4, s, x_zero=0, y_zero=0, relu=False)
    xc, wc = _codes(rng, (1, 4, 4, 2)), w[:, :2].reshape(4, 2, 1, 1).copy()
    geom = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)
    with pytest.raises(ValueError, match="y_zero must be in"):
        q8.conv2d_q8_forward(xc, wc, bias, m, s, x_zero=0, y_zero=128, relu=False, **geom)


def test_reference_refuses_codes_outside_the_format():
    """Through the front door (the reference's own functions expect checked arguments)."""
    from cnnkern.compress import kernels

    _refuses_codes_outside_the_format(kernels.get("reference"), np.random.default_rng(1))


def test_fixed_point_is_close_to_the_real_factor():
    real = np.array([1e-12, 3e-5, 0.37, 0.5, 0.99999999999, 7.0])
    m, s = fixed_point(real)
    assert m[0] == 0
    got = m[1:] * 2.0 ** -s[1:].astype(np.float64)
    np.testing.assert_allclose(got, real[1:], rtol=2**-30)


# --- every backend equals the reference ---------------------------------------------------------------------
def _q8(target):
    """The int8 kernels of the backend under test (conftest's ``target``: cpp once per SIMD path, its avx512
    path running VNNI where the CPU has it; test_cuda.py collects these tests again with the emulated CUDA
    backend). The reference is the oracle, so it is not compared with itself."""
    from cnnkern.compress import kernels

    if target.name == "reference":
        pytest.skip("the reference is the specification these tests compare with")
    return kernels.for_backend(target.backend)


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c[:7])))
@pytest.mark.parametrize("relu", [False, True])
def test_conv2d_q8_equals_the_reference(target, case, relu):
    q8 = _q8(target)
    rng = np.random.default_rng(hash(case) % 2**32)
    n, c, h, w, k, r, s, st, pad, dil, g = case
    x = _codes(rng, (n, h, w, c))
    wq, bias, mult, shift = _layer(rng, (k, c // g, r, s), c // g * r * s)
    mult[0], shift[0] = 0, 1  # a channel whose factor rounded to 0
    kw = dict(x_zero=int(rng.integers(0, 128)), y_zero=int(rng.integers(0, 128)), relu=relu)
    geom = dict(stride=st, padding=pad, dilation=dil, groups=g)
    want = ref.conv2d_q8_forward(x, wq, bias, mult, shift, **kw, **geom)
    got = q8.conv2d_q8_forward(x, wq, bias, mult, shift, **kw, **geom)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    assert 0 < (want == kw["y_zero"]).mean() < 0.9  # the requantization spans the codes, not one value


@pytest.mark.parametrize(
    "case",
    [
        # conv shape as CONV_CASES, then the pool window (= its stride)
        ((2, 1, 13, 11, 40, 3, 3, (1, 1), (0, 0, 0, 0), (1, 1), 1), (2, 2)),
        ((1, 20, 9, 11, 70, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1), (3, 2)),
        ((3, 8, 7, 6, 50, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1), (1, 3)),
        ((1, 4, 6, 7, 6, 2, 3, (1, 2), (0, 0, 0, 0), (1, 1), 2), (2, 1)),
    ],
    ids=lambda c: "x".join(map(str, c[0][:7])) + f"-pool{c[1][0]}x{c[1][1]}",
)
def test_conv2d_q8_with_a_fused_max_pool_equals_conv_then_pool(target, case):
    """conv2d_q8_pool_forward (the max pool of window = stride = pool, floor mode; cpp takes it in the
    conv's epilogue, the others compose their two kernels) equals the reference's conv, then its max pool."""
    q8 = _q8(target)
    (n, c, h, w, k, r, s, st, pad, dil, g), pool = case
    rng = np.random.default_rng(11)
    x = _codes(rng, (n, h, w, c))
    wq, bias, mult, shift = _layer(rng, (k, c // g, r, s), c // g * r * s)
    kw = dict(x_zero=9, y_zero=50, relu=True, stride=st, padding=pad, dilation=dil, groups=g)
    conv = ref.conv2d_q8_forward(x, wq, bias, mult, shift, **kw)
    want = ref.maxpool2d_q8_forward(conv, kernel_size=pool, stride=pool, padding=(0, 0), ceil_mode=False)
    got = q8.conv2d_q8_pool_forward(x, wq, bias, mult, shift, **kw, pool=pool)
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(want)) > 10  # the pool picks among spread codes


@pytest.mark.parametrize(
    ("n", "n_in", "n_out"), [(1, 5, 3), (67, 64, 10), (9, 131, 33), (130, 576, 64), (1, 12, 70)]
)
def test_dense_q8_equals_the_reference(target, n, n_in, n_out):
    q8 = _q8(target)
    rng = np.random.default_rng(n * 1000 + n_in)
    x = _codes(rng, (n, n_in))
    wq, bias, mult, shift = _layer(rng, (n_out, n_in), n_in)
    for relu in (False, True):
        kw = dict(x_zero=3, y_zero=40, relu=relu)
        np.testing.assert_array_equal(
            q8.dense_q8_forward(x, wq, bias, mult, shift, **kw),
            ref.dense_q8_forward(x, wq, bias, mult, shift, **kw),
        )
    got = q8.dense_q8_acc(x, wq, bias, x_zero=77)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ref.dense_q8_acc(x, wq, bias, x_zero=77))


def test_dense_q8_acc_is_exact_at_the_largest_sums(target):
    """All-127 codes against all-127 (and all -127) weights, zero point 0: the largest accumulators the
    format allows for this length, where a saturating int16 step would show."""
    q8 = _q8(target)
    x = np.full((3, 4096), 127, np.uint8)
    w = np.full((17, 4096), 127, np.int8)
    w[1::2] = -127
    bias = np.zeros(17, np.int32)
    got = q8.dense_q8_acc(x, w, bias, x_zero=0)
    np.testing.assert_array_equal(got, ref.dense_q8_acc(x, w, bias, x_zero=0))
    assert got[0, 0] == 4096 * 127 * 127


@pytest.mark.parametrize(
    ("shape", "k", "stride", "pad", "ceil"),
    [
        ((2, 3, 8, 9), (2, 2), (2, 2), (0, 0), False),
        ((2, 6, 7, 35), (2, 2), (2, 2), (1, 1), True),  # channel vectors of 16 and a tail
        ((1, 5, 7, 7), (3, 3), (2, 2), (1, 1), True),
        ((1, 2, 5, 6), (3, 2), (1, 2), (1, 0), True),
    ],
)
def test_maxpool2d_q8_equals_the_reference(target, shape, k, stride, pad, ceil):
    q8 = _q8(target)
    x = _codes(np.random.default_rng(7), shape)
    kw = dict(kernel_size=k, stride=stride, padding=pad, ceil_mode=ceil)
    np.testing.assert_array_equal(q8.maxpool2d_q8_forward(x, **kw), ref.maxpool2d_q8_forward(x, **kw))


def test_backends_refuse_codes_outside_the_format(target):
    _refuses_codes_outside_the_format(_q8(target), np.random.default_rng(2))


def test_weights_changed_in_place_are_not_served_from_a_stale_packing(target):
    """The cpp kernels keep each layer's packed weights between calls (keyed by the arrays' contents): the
    same arrays changed in place give the new results."""
    q8 = _q8(target)
    rng = np.random.default_rng(5)
    x = _codes(rng, (2, 6, 6, 8))
    w, bias, mult, shift = _layer(rng, (20, 8, 3, 3), 72)
    kw = dict(x_zero=4, y_zero=30, relu=False, stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1)
    for change in range(3):
        want = ref.conv2d_q8_forward(x, w, bias, mult, shift, **kw)
        np.testing.assert_array_equal(q8.conv2d_q8_forward(x, w, bias, mult, shift, **kw), want)
        np.testing.assert_array_equal(
            q8.dense_q8_acc(x[:, 0, 0], w[:, :, 0, 0], bias, x_zero=4),
            ref.dense_q8_acc(x[:, 0, 0], w[:, :, 0, 0], bias, x_zero=4),
        )
        w[change, 3] = -w[change, 3]
        bias[change + 5] += 1000
        shift[change + 7] += 1


def test_input_quantization_equals_the_specification(target):
    """The backend's input quantization (cpp: C++ for float32) equals qparams.quantize_input: ties (x / scale
    half-way between codes) to even, clipping at both ends, huge values."""
    from cnnkern.compress.qparams import quantize_input

    q8 = _q8(target)
    rng = np.random.default_rng(8)
    scale = 0.0123
    ties = (np.arange(-40, 300) + 0.5) * np.float64(scale)
    x = np.concatenate(
        [rng.normal(0.5, 1.0, 3000), ties, [0.0, -0.0, 1e30, -1e30, 3.4e38, -3.4e38, scale * 127.5]]
    ).astype(np.float32)
    x = x[: len(x) // 3 * 3].reshape(-1, 3, 1, 1)
    for zero in (0, 17, 127):
        want = quantize_input(x, scale, zero)
        got = q8.quantize_input_q8(x, scale=scale, zero=zero)
        assert got.dtype == np.uint8 and got.shape == x.shape
        np.testing.assert_array_equal(got, want)
    mid = quantize_input(x, scale, 17)
    assert 0 < (mid == 0).mean() < 0.5 and 0 < (mid == 127).mean() < 0.5  # both clips reached
