"""Fused kernels on every backend against the unfused composition on the float64 reference.

conv2d_bias_act_forward(x, w, b, activation) == activation_forward(conv2d_forward(x, w, b), activation)
dense_bias_act_forward(x, w, b, activation)  == activation_forward(dense_forward(x, w, b), activation)
batchnorm2d_act_forward(x, ..., activation)  == activation_forward(batchnorm2d_forward(x, ...), activation)
adam_update_multi(params, grads, ms, vs)      == adam_update on each quadruple
maxpool2d_act_backward(dy, argmax, a, act)    == activation_backward(maxpool2d_backward(dy, argmax), a, act)

The cases are the conv and dense conformance cases (tail widths, channel counts, strides, padding, groups),
each with every activation kind in turn; the tolerance is the GEMM's plus an elementwise op's (every
activation is at most 1-Lipschitz, so the GEMM's error does not grow through it).
"""

import numpy as np
import pytest

from cnnkern import ops

from .cases import BATCHNORM_CASES, CONV_CASES, DENSE_CASES, POOL_CASES, batchnorm_input, randint, randn
from .compare import EPS32, assert_close, assert_equal, elementwise_tol, gemm_tol, scaled

KINDS = (None, "relu", "leaky_relu", "sigmoid", "tanh")


def _tol(k, dt):
    g, e = gemm_tol(k, dt), elementwise_tol(dt)
    return dict(atol=g["atol"] + e["atol"], rtol=g["rtol"] + e["rtol"])


def _compose(y, kind, alpha):
    return y if kind is None else ops.activation_forward(y, kind, alpha=alpha, backend="reference")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: str(k))
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.id)
def test_conv2d_bias_act_forward(target, case, kind):
    x, w = randn(case.x, 30), randn(case.w, 31)
    b = randn((case.w[0],), 32) if case.bias else None
    alpha = 0.1
    want = _compose(ops.conv2d_forward(x, w, b, backend="reference", **case.kwargs()), kind, alpha)
    k = case.w[1] * case.w[2] * case.w[3]
    for dt in target.dtypes:
        got = target.call(
            "conv2d_bias_act_forward",
            target.put(x, dt),
            target.put(w, dt),
            target.put(b, dt),
            activation=kind,
            alpha=alpha,
            **case.kwargs(),
        )
        assert_close(target.get(got), want, **_tol(k, dt), what=f"{target.id} {dt} {kind} y", dtype=dt)


@pytest.mark.parametrize("kind", ("relu", "leaky_relu"))
@pytest.mark.parametrize("case", CONV_CASES[:8], ids=lambda c: c.id)
def test_conv2d_bias_act_exact_on_small_integers(target, case, kind):
    """Integer inputs: the conv is exact in any summation order, and relu / leaky_relu with slope 0.5 only
    select or halve, so the fused result must equal the composition bit for bit."""
    x, w = randint(case.x, 40), randint(case.w, 41)
    b = randint((case.w[0],), 42) if case.bias else None
    want = _compose(ops.conv2d_forward(x, w, b, backend="reference", **case.kwargs()), kind, 0.5)
    got = target.call(
        "conv2d_bias_act_forward",
        target.put(x, "float32"),
        target.put(w, "float32"),
        target.put(b, "float32"),
        activation=kind,
        alpha=0.5,
        **case.kwargs(),
    )
    assert_equal(target.get(got), want, what=f"{target.id} {kind} y")


def test_conv2d_bias_act_keeps_nan(target):
    """A NaN input reaches every output whose window holds it, and relu keeps NaN (docs/design.md §3)."""
    x, w, b = randn((2, 3, 9, 9), 50), randn((5, 3, 3, 3), 51), randn((5,), 52)
    x[1, 2, 4, 4] = np.nan
    want = _compose(ops.conv2d_forward(x, w, b, stride=1, padding=1, backend="reference"), "relu", 0.0)
    got = target.call(
        "conv2d_bias_act_forward",
        target.put(x, "float32"),
        target.put(w, "float32"),
        target.put(b, "float32"),
        stride=1,
        padding=1,
        activation="relu",
    )
    assert np.isnan(want).sum() == 5 * 9
    assert_close(target.get(got), want, **_tol(27, "float32"), what=f"{target.id} y", dtype="float32")


@pytest.mark.parametrize("kind", ("leaky_relu", "sigmoid", "tanh"))
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.id)
def test_cpp_conv2d_bias_act_equals_its_composition(target, case, kind):
    """On cpp every activation is applied where the conv writes its output (the indirect GEMM's write-out)
    or by the elementwise kernel after it, with the same vector arithmetic: the fused result equals
    conv2d_forward then activation_forward bit for bit on every SIMD path."""
    if target.name != "cpp":
        pytest.skip("compares the cpp kernels with each other (the other backends compose)")
    be = target.backend
    x, w = randn(case.x, 30).astype(np.float32), randn(case.w, 31).astype(np.float32)
    b = randn((case.w[0],), 32).astype(np.float32) if case.bias else None
    z = ops.conv2d_forward(x, w, b, backend=be, **case.kwargs())
    want = ops.activation_forward(z, kind, alpha=0.1, backend=be)
    got = ops.conv2d_bias_act_forward(x, w, b, activation=kind, alpha=0.1, backend=be, **case.kwargs())
    assert_equal(got, want, what=f"{target.id} {kind}", dtype="float32")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: str(k))
@pytest.mark.parametrize("case", DENSE_CASES, ids=lambda c: c.id)
def test_dense_bias_act_forward(target, case, kind):
    x, w = randn((case.n, case.fan_in), 60), randn((case.fan_out, case.fan_in), 61)
    b = randn((case.fan_out,), 62) if case.bias else None
    alpha = 0.2
    want = _compose(ops.dense_forward(x, w, b, backend="reference"), kind, alpha)
    for dt in target.dtypes:
        got = target.call(
            "dense_bias_act_forward",
            target.put(x, dt),
            target.put(w, dt),
            target.put(b, dt),
            activation=kind,
            alpha=alpha,
        )
        assert_close(
            target.get(got), want, **_tol(case.fan_in, dt), what=f"{target.id} {dt} {kind} y", dtype=dt
        )


# Tensor sizes across the SIMD tails and the pool's split point (2^15 elements), so a chunk boundary falls
# inside a tensor and small tensors share a chunk.
MULTI_SHAPES = [(1,), (7,), (8,), (9,), (33,), (64, 3, 3, 3), (40000,), (17, 5)]
ADAM_CONFIGS = [
    dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, eps_mode="torch"),
    dict(lr=0.1, beta1=0.5, beta2=0.9, eps=1e-3, weight_decay=0.1, eps_mode="keras"),
]


@pytest.mark.parametrize("config", ADAM_CONFIGS, ids=["torch", "keras-wd"])
def test_adam_update_multi(target, config):
    steps = 3
    params = [randn(s, 70 + i) for i, s in enumerate(MULTI_SHAPES)]
    grads = [[randn(s, 100 * t + i) for i, s in enumerate(MULTI_SHAPES)] for t in range(steps)]
    for dt in target.dtypes:
        ref = [(p.copy(), np.zeros(p.shape), np.zeros(p.shape)) for p in params]
        got = [
            (target.put(p, dt), target.put(np.zeros(p.shape), dt), target.put(np.zeros(p.shape), dt))
            for p in params
        ]
        for t in range(1, steps + 1):
            for (p, m, v), g in zip(ref, grads[t - 1]):
                ops.adam_update(p, g, m, v, step=t, backend="reference", **config)
            target.call(
                "adam_update_multi",
                [q[0] for q in got],
                [target.put(g, dt) for g in grads[t - 1]],
                [q[1] for q in got],
                [q[2] for q in got],
                step=t,
                **config,
            )
            tol = scaled(dt, 16 * EPS32 * t, 16 * EPS32 * t)
            for i, (r, q) in enumerate(zip(ref, got)):
                for name, a, want in zip(("param", "m", "v"), q, r):
                    assert_close(
                        target.get(a), want, **tol, what=f"{target.id} {dt} {name}[{i}] step {t}", dtype=dt
                    )


# Convolutions with few output pixels per image (P*Q < 128): the cpp backend multiplies several images in one
# GEMM (images side by side in the columns), in blocks split over the threads. These geometries cross the
# block and thread boundaries (image counts that do not divide evenly, one image left over, groups, stride,
# padding, dilation); the reference computes image by image.
BATCHED = [
    ((3, 3, 5, 5), (4, 3, 3, 3), dict()),
    ((7, 4, 6, 5), (6, 2, 3, 2), dict(stride=2, padding=1, groups=2)),
    ((5, 2, 7, 7), (3, 2, 3, 3), dict(padding="same", dilation=2)),
    ((33, 3, 4, 4), (5, 3, 2, 2), dict()),
    ((40, 1, 7, 7), (9, 1, 3, 3), dict(padding=1, stride=(2, 1))),
]


@pytest.mark.parametrize("kind", (None, "relu"), ids=str)
@pytest.mark.parametrize(
    "xs, ws, kw", BATCHED, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else None
)
def test_batched_small_output_conv(target, xs, ws, kw, kind):
    x, w, b = randn(xs, 80), randn(ws, 81), randn((ws[0],), 82)
    y = ops.conv2d_forward(x, w, b, backend="reference", **kw)
    dy = randn(y.shape, 83)
    want_dx, want_dw, want_db = ops.conv2d_backward(dy, x, w, backend="reference", **kw)
    k_y = ws[1] * ws[2] * ws[3]
    k_dx = ws[0] * ws[2] * ws[3]
    k_dw = y.shape[0] * y.shape[2] * y.shape[3]
    for dt in target.dtypes:
        got = target.call(
            "conv2d_bias_act_forward",
            target.put(x, dt),
            target.put(w, dt),
            target.put(b, dt),
            activation=kind,
            **kw,
        )
        assert_close(
            target.get(got), _compose(y, kind, 0.01), **_tol(k_y, dt), what=f"{target.id} {dt} y", dtype=dt
        )
        dx, dw, db = (
            target.get(a)
            for a in target.call(
                "conv2d_backward", target.put(dy, dt), target.put(x, dt), target.put(w, dt), **kw
            )
        )
        assert_close(dx, want_dx, **gemm_tol(k_dx, dt), what=f"{target.id} {dt} dx", dtype=dt)
        assert_close(dw, want_dw, **gemm_tol(k_dw, dt), what=f"{target.id} {dt} dw", dtype=dt)
        assert_close(db, want_db, **gemm_tol(k_dw, dt), what=f"{target.id} {dt} db", dtype=dt)


# Stride 1, no padding or dilation, one group: the cpp backend's SIMD path runs indirect GEMMs (tiles of 6
# pixels or taps x 16 filters or channels read in place from x and dy; dx by classes of pixels with the
# same valid taps; dw over chunks of ~256 pixels, split over the threads by image). These geometries cross
# the 16-wide and 6-tall tile tails (K, C, C*R*S), batch 1 (fewer images than threads), odd batches with
# uneven chunks, non-square kernels, a kernel covering the image, a single input channel's dx.
IGEMM = [
    ((1, 9, 7, 12), (33, 9, 3, 3)),
    ((3, 17, 6, 5), (16, 17, 2, 4)),
    ((5, 3, 4, 4), (7, 3, 4, 4)),
    ((7, 5, 12, 12), (6, 5, 3, 3)),
    ((2, 40, 13, 13), (20, 40, 3, 3)),
    ((9, 64, 5, 5), (64, 64, 3, 3)),
    ((2, 3, 4, 9), (5, 3, 1, 3)),
    ((1, 1, 5, 9), (3, 1, 3, 3)),
]


@pytest.mark.parametrize("kind", (None, "relu", "tanh"), ids=str)
@pytest.mark.parametrize("xs, ws", IGEMM, ids=lambda v: "x".join(map(str, v)))
def test_stride1_valid_conv(target, xs, ws, kind):
    x, w, b = randn(xs, 84), randn(ws, 85), randn((ws[0],), 86)
    y = ops.conv2d_forward(x, w, b, backend="reference")
    dy = randn(y.shape, 87)
    want_dx, want_dw, want_db = ops.conv2d_backward(dy, x, w, backend="reference")
    k_y, k_dx = ws[1] * ws[2] * ws[3], ws[0] * ws[2] * ws[3]
    k_dw = y.shape[0] * y.shape[2] * y.shape[3]
    for dt in target.dtypes:
        got = target.call(
            "conv2d_bias_act_forward",
            target.put(x, dt),
            target.put(w, dt),
            target.put(b, dt),
            activation=kind,
        )
        assert_close(
            target.get(got), _compose(y, kind, 0.01), **_tol(k_y, dt), what=f"{target.id} {dt} y", dtype=dt
        )
        if kind is not None:
            continue
        dx, dw, db = (
            target.get(a)
            for a in target.call("conv2d_backward", target.put(dy, dt), target.put(x, dt), target.put(w, dt))
        )
        assert_close(dx, want_dx, **gemm_tol(k_dx, dt), what=f"{target.id} {dt} dx", dtype=dt)
        assert_close(dw, want_dw, **gemm_tol(k_dw, dt), what=f"{target.id} {dt} dw", dtype=dt)
        assert_close(db, want_db, **gemm_tol(k_dw, dt), what=f"{target.id} {dt} db", dtype=dt)
    # Small integers: exact in any summation order, so a misplaced tap or pixel shows as a mismatch.
    x, w, b = randint(xs, 88), randint(ws, 89), randint((ws[0],), 90)
    dy = randint(y.shape, 91)
    want = ops.conv2d_forward(x, w, b, backend="reference")
    got = target.call(
        "conv2d_forward", target.put(x, "float32"), target.put(w, "float32"), target.put(b, "float32")
    )
    assert_equal(target.get(got), want, what=f"{target.id} y")
    want = ops.conv2d_backward(dy, x, w, backend="reference")
    got = target.call(
        "conv2d_backward", target.put(dy, "float32"), target.put(x, "float32"), target.put(w, "float32")
    )
    for name, g, ref in zip(("dx", "dw", "db"), got, want):
        assert_equal(target.get(g), ref, what=f"{target.id} {name}")


# One input channel, 3x3, stride 1, no padding (the first layer of an image CNN): the cpp backend's SIMD
# path runs direct kernels (rows of 8 outputs, masked row tails, filters in blocks of 4). Widths give every
# tail length Q % 8 = 0..7; filter counts cross the block of 4; batches of 1 and of more images than threads.
C1_CASES = [
    ((1, 1, 3, 3), 1),
    ((2, 1, 10, 11), 5),
    ((3, 1, 12, 4), 4),
    ((1, 1, 9, 15), 7),
    ((5, 1, 7, 16), 9),
    ((4, 1, 5, 17), 3),
    ((3, 1, 6, 26), 8),
    ((7, 1, 28, 28), 32),
]


@pytest.mark.parametrize("kind", KINDS, ids=str)
@pytest.mark.parametrize(
    "xs, k", C1_CASES, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v)
)
def test_single_channel_3x3_conv(target, xs, k, kind):
    x, w, b = randn(xs, 90), randn((k, 1, 3, 3), 91), randn((k,), 92)
    y = ops.conv2d_forward(x, w, b, backend="reference")
    dy = randn(y.shape, 93)
    want_dx, want_dw, want_db = ops.conv2d_backward(dy, x, w, backend="reference")
    k_dw = y.shape[0] * y.shape[2] * y.shape[3]
    for dt in target.dtypes:
        got = target.call(
            "conv2d_bias_act_forward",
            target.put(x, dt),
            target.put(w, dt),
            target.put(b, dt),
            activation=kind,
            alpha=0.3,
        )
        assert_close(
            target.get(got), _compose(y, kind, 0.3), **_tol(9, dt), what=f"{target.id} {dt} y", dtype=dt
        )
        if kind is not None:
            continue
        for need_dx in (False, True):
            dx, dw, db = (
                target.get(a)
                for a in target.call(
                    "conv2d_backward",
                    target.put(dy, dt),
                    target.put(x, dt),
                    target.put(w, dt),
                    need_dx=need_dx,
                )
            )
            assert (dx is None) == (not need_dx)
            if need_dx:
                assert_close(dx, want_dx, **gemm_tol(9 * k, dt), what=f"{target.id} {dt} dx", dtype=dt)
            assert_close(dw, want_dw, **gemm_tol(k_dw, dt), what=f"{target.id} {dt} dw", dtype=dt)
            assert_close(db, want_db, **gemm_tol(k_dw, dt), what=f"{target.id} {dt} db", dtype=dt)


def test_single_channel_3x3_conv_exact_and_nan(target):
    """Integer inputs are exact in any order; a NaN pixel reaches exactly the 3x3 block of outputs over it."""
    x, w, b = randint((2, 1, 11, 13), 94), randint((6, 1, 3, 3), 95), randint((6,), 96)
    want = ops.conv2d_forward(x, w, b, backend="reference")
    got = target.call(
        "conv2d_bias_act_forward",
        target.put(x, "float32"),
        target.put(w, "float32"),
        target.put(b, "float32"),
    )
    assert_equal(target.get(got), want, what=f"{target.id} y")
    x[1, 0, 5, 12] = np.nan
    want = _compose(ops.conv2d_forward(x, w, b, backend="reference"), "relu", 0.0)
    got = target.call(
        "conv2d_bias_act_forward",
        target.put(x, "float32"),
        target.put(w, "float32"),
        target.put(b, "float32"),
        activation="relu",
    )
    assert np.isnan(want).sum() == 6 * 3
    assert_equal(target.get(got), want, what=f"{target.id} relu y")


def _pool_act_input(shape, kind, seed):
    """a = act(z) for z with ties (small integers), zeros and, for 'nan', NaN and ±inf in the windows."""
    z = randint(shape, seed, -2, 2).astype(np.float64)
    if kind == "nan":
        u = np.random.default_rng(seed).random(shape)
        z[u < 0.06] = np.nan
        z[(u >= 0.06) & (u < 0.1)] = np.inf
        z[(u >= 0.1) & (u < 0.14)] = -np.inf
    return z


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf * 0 = NaN, on purpose
@pytest.mark.parametrize("data", ("ties", "nan"))
@pytest.mark.parametrize("kind", KINDS[1:], ids=str)
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: c.id)
def test_maxpool2d_act_backward(target, case, kind, data):
    """Overlapping windows accumulate before the activation's gradient, exactly as the composition does."""
    alpha = 0.1
    a = ops.activation_forward(_pool_act_input(case.x, data, 40), kind, alpha=alpha, backend="reference")
    y, arg = ops.maxpool2d_forward(a, backend="reference", **case.max_kwargs())
    dy = randn(y.shape, 41)
    dx = ops.maxpool2d_backward(dy, arg, case.x, backend="reference")
    want = ops.activation_backward(dx, a, kind, alpha=alpha, backend="reference")
    kh, kw = (case.kernel_size,) * 2 if isinstance(case.kernel_size, int) else case.kernel_size
    for dt in target.dtypes:
        args = (target.put(dy, dt), target.put(arg), target.put(a, dt), kind)
        got = target.call("maxpool2d_act_backward", *args, alpha=alpha)
        assert_close(target.get(got), want, **_tol(kh * kw, dt), what=f"{target.id} {dt} {kind} dz", dtype=dt)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: str(k))
@pytest.mark.parametrize(
    "case", [c for c in BATCHNORM_CASES if c.x[0] * c.x[2] * c.x[3] > 1][:4], ids=lambda c: c.id
)
def test_batchnorm2d_act_forward(target, case, kind, training):
    """The statistics and the running-stat update are batchnorm2d_forward's; y is its y through the
    activation (tolerance: batch norm's, sqrt(n)-scaled, plus an elementwise op's)."""
    c = case.x[1]
    x = batchnorm_input(case, 60)
    gamma, beta = randn((c,), 61), randn((c,), 62)
    rm, rv = randn((c,), 63), 0.5 + np.random.default_rng(64).random(c)
    want_rm, want_rv = rm.copy(), rv.copy()
    stats = dict(training=training, momentum=case.momentum, eps=case.eps)
    y, mean, invstd = ops.batchnorm2d_forward(x, gamma, beta, want_rm, want_rv, **stats, backend="reference")
    want = _compose(y, kind, 0.1)
    k = 64 * EPS32 * (case.x[0] * case.x[2] * case.x[3]) ** 0.5 * max(1.0, case.scale)
    for dt in target.dtypes:
        g_rm, g_rv = target.put(rm, dt), target.put(rv, dt)
        gy, gmean, ginvstd = target.call(
            "batchnorm2d_act_forward",
            target.put(x, dt),
            target.put(gamma, dt),
            target.put(beta, dt),
            g_rm,
            g_rv,
            **stats,
            activation=kind,
            alpha=0.1,
        )
        what = f"{target.id} {dt} {kind}"
        assert_close(target.get(gy), want, **scaled(dt, k, k), what=f"{what} y", dtype=dt)
        assert_close(target.get(gmean), mean, **scaled(dt, k * case.scale, k), what=f"{what} mean", dtype=dt)
        assert_close(target.get(g_rv), want_rv, **scaled(dt, 0.0, k), what=f"{what} running_var", dtype=dt)
