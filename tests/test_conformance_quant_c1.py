"""The int8 convolution of ONE input channel (a grey image's first layer; cpp runs a direct kernel for it,
16-bit pairs of taps per output channel, instead of the implicit GEMM): every backend EQUAL to the
reference, with and without the fused max pool, on channel counts that cross every vector tail (8, 16 and
the 32 / 64-channel register tiles), odd widths, tap counts odd and even (1x1 to 5x5), strides, paddings,
dilations and batch 1."""

import numpy as np
import pytest

from cnnkern.backends.reference import quant as ref

from .test_conformance_quant import _codes, _layer, _q8

# n, h, w, r, s, stride, padding (t, b, l, r), dilation, pool
GEOMETRIES = [
    (1, 28, 28, 3, 3, (1, 1), (0, 0, 0, 0), (1, 1), (2, 2)),  # Fashion-MNIST's first layer, batch 1
    (2, 9, 11, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), (1, 1)),
    (1, 13, 7, 5, 5, (2, 1), (2, 2, 2, 2), (1, 1), (2, 1)),
    (3, 8, 9, 2, 3, (1, 2), (0, 1, 2, 0), (2, 1), (1, 1)),
    (1, 7, 13, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), (3, 2)),
    (2, 10, 9, 4, 2, (2, 2), (1, 0, 0, 1), (1, 2), (1, 1)),
    (1, 11, 11, 5, 3, (1, 1), (0, 0, 1, 1), (1, 1), (2, 2)),
]
CHANNELS = [1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40, 47, 48, 49, 63, 64, 65, 70]
CASES = [(k, GEOMETRIES[i % len(GEOMETRIES)]) for i, k in enumerate(CHANNELS)]
CASES += [(32, g) for g in GEOMETRIES[1:]]  # the common count on every geometry


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"k{c[0]}-" + "x".join(map(str, c[1][:5])))
def test_one_channel_conv2d_q8_equals_the_reference(target, case):
    q8 = _q8(target)
    k, (n, h, w, r, s, stride, pad, dil, pool) = case
    rng = np.random.default_rng(1000 * k + h * w)
    x = _codes(rng, (n, h, w, 1))
    wq, bias, mult, shift = _layer(rng, (k, 1, r, s), r * s)
    wq[0] = 127  # the largest products, all of one sign
    for relu in (False, True):
        kw = dict(x_zero=int(rng.integers(0, 128)), y_zero=int(rng.integers(0, 128)), relu=relu)
        geom = dict(stride=stride, padding=pad, dilation=dil, groups=1)
        want = ref.conv2d_q8_forward(x, wq, bias, mult, shift, **kw, **geom)
        np.testing.assert_array_equal(q8.conv2d_q8_forward(x, wq, bias, mult, shift, **kw, **geom), want)
        pooled = ref.maxpool2d_q8_forward(
            want, kernel_size=pool, stride=pool, padding=(0, 0), ceil_mode=False
        )
        got = q8.conv2d_q8_pool_forward(x, wq, bias, mult, shift, **kw, **geom, pool=pool)
        np.testing.assert_array_equal(got, pooled)
        if k >= 8:
            assert len(np.unique(want)) > 5  # the requantization spans the codes, not one value
