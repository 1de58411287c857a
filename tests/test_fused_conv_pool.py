"""conv2d_act_maxpool_forward / _backward on every backend against the composition on the float64 reference:

    forward:  maxpool2d_forward(conv2d_bias_act_forward(x, w, b, activation), pool geometry) -> (y, argmax)
    backward: conv2d_backward(maxpool2d_backward(activation_backward(dy, y), argmax, z.shape), x, w)

Small integers (over 8) make the conv exact in float32, so ties (many, with values in [-2, 2] / 8) resolve
the same way on every backend and the argmax must match the reference exactly. The geometries cover the cpp
backend's fused path (one input channel, 3x3: the conv output of each image stays in a buffer) with pooled
rows wider and narrower than a vector, and the composition every other geometry runs (several channels,
stride, padding).
"""

import numpy as np
import pytest

from cnnkern import layers, models, ops

from .cases import randint, randn
from .compare import assert_close, assert_equal, elementwise_tol, gemm_tol

KINDS = (None, "relu", "leaky_relu", "sigmoid", "tanh")

# (id, x shape, w shape, conv kwargs, pool kwargs)
CASES = [
    ("c1-28x28-k32", (3, 1, 28, 28), (32, 1, 3, 3), {}, dict(pool_size=2)),  # the classic CNN's conv1 + pool1
    ("c1-13x17-k5", (2, 1, 13, 17), (5, 1, 3, 3), {}, dict(pool_size=2)),  # odd sizes, K % 4 = 1
    ("c1-20x40-k6", (2, 1, 20, 40), (6, 1, 3, 3), {}, dict(pool_size=2)),  # pooled rows of 19: 8 + 8 + 3
    ("c1-13x21-k3", (2, 1, 13, 21), (3, 1, 3, 3), {}, dict(pool_size=2)),  # odd conv rows/columns, 8 + 1
    ("c1-9x11-k4", (1, 1, 9, 11), (4, 1, 3, 3), {}, dict(pool_size=2)),  # pooled rows of 4 (< a vector)
    ("c1-b1-26x30-k7", (1, 1, 26, 30), (7, 1, 3, 3), {}, dict(pool_size=2)),  # one image: filter pairs split
    ("c1-overlap-pad", (2, 1, 12, 14), (4, 1, 3, 3), {}, dict(pool_size=3, pool_stride=2, pool_padding=1)),
    ("c1-ceil", (2, 1, 12, 11), (3, 1, 3, 3), {}, dict(pool_size=2, ceil_mode=True)),
    ("c1-dilated-pool", (1, 1, 14, 14), (4, 1, 3, 3), {}, dict(pool_size=2, pool_stride=1, pool_dilation=2)),
    ("c3-stride-pad", (2, 3, 11, 10), (5, 3, 3, 3), dict(stride=2, padding=1), dict(pool_size=2)),
    ("c4-groups-5x5", (2, 4, 12, 12), (6, 2, 5, 5), dict(groups=2), dict(pool_size=2, pool_stride=1)),
    ("c2-1x1", (2, 2, 6, 8), (3, 2, 1, 1), {}, dict(pool_size=3, pool_stride=3, ceil_mode=True)),
    # the direct few-channel kernels over zero-bordered planes: one channel 'same' (the register-fused pool),
    # three channels padded by 2 (the per-channel sum, then the pool)
    ("c1-same-28x28-k6", (2, 1, 28, 28), (6, 1, 3, 3), dict(padding=1), dict(pool_size=2)),
    ("c3-pad2-13x19-k5", (2, 3, 13, 19), (5, 3, 3, 3), dict(padding=2), dict(pool_size=2)),
    # pools that never read the conv's last rows / columns: the cpp backend's conv is cropped to what is read
    # (the classic CNN's conv2, 11x11 -> 5x5; rows only; a stride-3 pool leaving one column)
    ("c8-crop-11x11", (3, 8, 13, 13), (17, 8, 3, 3), {}, dict(pool_size=2)),
    ("c6-crop-rows-5x5", (2, 6, 11, 12), (7, 6, 5, 5), {}, dict(pool_size=2)),
    ("c8-crop-stride3", (2, 8, 14, 14), (4, 8, 3, 3), {}, dict(pool_size=2, pool_stride=3)),
]
IDS = [c[0] for c in CASES]


def _reference(x, w, b, kind, alpha, conv, pool):
    z = ops.conv2d_bias_act_forward(x, w, b, activation=kind, alpha=alpha, backend="reference", **conv)
    pk = dict(
        kernel_size=pool["pool_size"],
        stride=pool.get("pool_stride"),
        padding=pool.get("pool_padding", 0),
        dilation=pool.get("pool_dilation", 1),
        ceil_mode=pool.get("ceil_mode", False),
    )
    y, argmax = ops.maxpool2d_forward(z, backend="reference", **pk)
    return z, y, argmax


def _reference_backward(dy, y, argmax, x, w, z_shape, kind, alpha, conv):
    g = dy if kind is None else ops.activation_backward(dy, y, kind, alpha=alpha, backend="reference")
    dz = ops.maxpool2d_backward(g, argmax, z_shape, backend="reference")
    return ops.conv2d_backward(dz, x, w, backend="reference", **conv)


@pytest.mark.parametrize("kind", KINDS, ids=str)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_exact_on_small_integers(target, case, kind):
    _, xs, ws, conv, pool = case
    # multiples of 1/8 (bias 1/64): the conv is exact, and |z| <= 3 keeps sigmoid / tanh of distinct values
    # distinct in float32 (no ties made by rounding); leaky_relu's slope 0.5 only halves
    x, w = randint(xs, 1, -2, 2) / 8, randint(ws, 2, -2, 2) / 8
    b = randint((ws[0],), 3, -2, 2) / 64
    alpha = 0.5
    _, y, argmax = _reference(x, w, b, kind, alpha, conv, pool)
    for dt in target.dtypes:
        gy, garg = target.call(
            "conv2d_act_maxpool_forward",
            target.put(x, dt),
            target.put(w, dt),
            target.put(b, dt),
            activation=kind,
            alpha=alpha,
            **conv,
            **pool,
        )
        assert_equal(target.get(garg), argmax, what=f"{target.id} {dt} {kind} argmax")
        if kind in ("sigmoid", "tanh"):  # exact conv, then one elementwise rounding
            assert_close(
                target.get(gy), y, **elementwise_tol(dt), what=f"{target.id} {dt} {kind} y", dtype=dt
            )
        else:
            assert_equal(target.get(gy), y, what=f"{target.id} {dt} {kind} y", dtype=dt)
        values = target.call(
            "conv2d_act_maxpool_forward",
            target.put(x, dt),
            target.put(w, dt),
            target.put(b, dt),
            activation=kind,
            alpha=alpha,
            return_argmax=False,
            **conv,
            **pool,
        )
        assert_equal(target.get(values), target.get(gy), what=f"{target.id} {dt} {kind} y without argmax")


@pytest.mark.parametrize("kind", KINDS, ids=str)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_random(target, case, kind):
    _, xs, ws, conv, pool = case
    x, w, b = randn(xs, 4), randn(ws, 5), randn((ws[0],), 6)
    _, y, _ = _reference(x, w, b, kind, 0.1, conv, pool)
    k = ws[1] * ws[2] * ws[3]
    for dt in target.dtypes:
        gy, _ = target.call(
            "conv2d_act_maxpool_forward",
            target.put(x, dt),
            target.put(w, dt),
            target.put(b, dt),
            activation=kind,
            alpha=0.1,
            **conv,
            **pool,
        )
        g, e = gemm_tol(k, dt), elementwise_tol(dt)
        tol = dict(atol=g["atol"] + e["atol"], rtol=g["rtol"] + e["rtol"])
        assert_close(target.get(gy), y, **tol, what=f"{target.id} {dt} {kind} y", dtype=dt)


@pytest.mark.parametrize(
    "need", [(False, True, True), (True, True, True), (True, False, False)], ids=["dw-db", "all", "dx-only"]
)
@pytest.mark.parametrize("kind", KINDS, ids=str)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward(target, case, kind, need):
    _, xs, ws, conv, pool = case
    x, w, b = randint(xs, 7, -2, 2), randint(ws, 8, -2, 2), randint((ws[0],), 9, -2, 2)
    z, y, argmax = _reference(x, w, b, kind, 0.1, conv, pool)
    dy = randn(y.shape, 10)
    want = _reference_backward(dy, y, argmax, x, w, z.shape, kind, 0.1, conv)
    flags = dict(zip(("need_dx", "need_dw", "need_db"), need))
    k_dw = xs[0] * z.shape[2] * z.shape[3]
    k_dx = ws[0] * ws[2] * ws[3]
    for dt in target.dtypes:
        got = target.call(
            "conv2d_act_maxpool_backward",
            target.put(dy, dt),
            target.put(y, dt),
            target.put(argmax),
            target.put(x, dt),
            target.put(w, dt),
            activation=kind,
            alpha=0.1,
            **conv,
            **flags,
        )
        for name, asked, g, ref, k in zip(("dx", "dw", "db"), need, got, want, (k_dx, k_dw, k_dw)):
            if not asked:
                assert g is None, f"{target.id} {name} was not asked for"
                continue
            # the activation's gradient adds one elementwise rounding to dy before the GEMM-like sums
            tol = gemm_tol(k, dt, magnitude=2.0)
            assert_close(target.get(g), ref, **tol, what=f"{target.id} {dt} {kind} {name}", dtype=dt)


@pytest.mark.parametrize(
    "xs, ws, need_dx",
    [
        ((5, 1, 28, 28), (32, 1, 3, 3), False),
        ((4, 8, 13, 13), (16, 8, 3, 3), True),
        ((3, 6, 11, 12), (7, 6, 5, 5), True),
    ],
    ids=["one-channel", "crop-11x11", "crop-rows"],
)
def test_cpp_fused_path_equals_its_composition(target, xs, ws, need_dx):
    """On cpp the one-channel path (conv output kept per image) and the convs cropped to what the pool reads
    (forward: the rows and columns no window reads are not computed; backward: those whose dz is zero) give
    bit for bit what the unfused cpp kernels give: conv2d_bias_act_forward + maxpool2d_forward, then
    maxpool2d_act_backward + conv2d_backward."""
    if target.name != "cpp":
        pytest.skip("compares the cpp kernels (numba's own: tests/test_numba_backend.py; others compose)")
    be = target.backend
    x = randn(xs, 11).astype(np.float32)
    w = randn(ws, 12, 0.3).astype(np.float32)
    b = randn((ws[0],), 13, 0.1).astype(np.float32)
    for kind in ("relu", "leaky_relu", "tanh"):
        z = ops.conv2d_bias_act_forward(x, w, b, activation=kind, alpha=0.1, backend=be)
        y0, a0 = ops.maxpool2d_forward(z, kernel_size=2, backend=be)
        y, a = ops.conv2d_act_maxpool_forward(x, w, b, activation=kind, alpha=0.1, pool_size=2, backend=be)
        np.testing.assert_array_equal(y, y0)
        np.testing.assert_array_equal(a, a0)
        dy = randn(y.shape, 14).astype(np.float32)
        dz = ops.maxpool2d_act_backward(dy, a0, z, kind, alpha=0.1, backend=be)
        want = ops.conv2d_backward(dz, x, w, need_dx=need_dx, backend=be)
        got = ops.conv2d_act_maxpool_backward(
            dy, y, a, x, w, activation=kind, alpha=0.1, need_dx=need_dx, backend=be
        )
        for name, g, r in zip(("dx", "dw", "db"), got, want):
            if r is not None:
                np.testing.assert_array_equal(g, r, err_msg=f"{kind} {name}")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # 0 * NaN in dw, on purpose
@pytest.mark.parametrize("hw", [12, 20], ids=["pooled-rows-of-5", "pooled-rows-of-9"])
def test_nan_reaches_the_pooled_output_and_the_gradients(target, hw):
    """A NaN in x reaches every conv output whose window holds it; the pool takes it (NaN wins), its relu
    gradient is zero (NaN > 0 is false), and dw, which sums dz times x over positions that include the NaN,
    is NaN exactly where the composition's is."""
    x, w, b = randn((2, 1, hw, hw), 20), randn((4, 1, 3, 3), 21), randn((4,), 22)
    x[1, 0, 5, 6] = np.nan
    _, y, argmax = _reference(x, w, b, "relu", 0.0, {}, dict(pool_size=2))
    gy, garg = target.call(
        "conv2d_act_maxpool_forward",
        target.put(x, "float32"),
        target.put(w, "float32"),
        target.put(b, "float32"),
        activation="relu",
        pool_size=2,
    )
    assert np.isnan(y).sum() > 0
    np.testing.assert_array_equal(np.isnan(target.get(gy)), np.isnan(y))
    assert_equal(target.get(garg)[np.isnan(y)], argmax[np.isnan(y)], what=f"{target.id} argmax at NaN")
    dy = randn(y.shape, 23)
    z_shape = (2, 4, hw - 2, hw - 2)
    want = _reference_backward(dy, y, argmax, x, w, z_shape, "relu", 0.0, {})
    got = target.call(
        "conv2d_act_maxpool_backward",
        target.put(dy, "float32"),
        gy,
        garg,
        target.put(x, "float32"),
        target.put(w, "float32"),
        activation="relu",
        need_dx=False,
    )
    for name, g, ref in zip(("dw", "db"), got[1:], want[1:]):
        assert_close(target.get(g), ref, **gemm_tol(2 * (hw - 2) ** 2, "float32"), what=f"{target.id} {name}")


def test_errors_name_the_argument(plain_target):
    be = plain_target.backend
    dt = be.dtypes[0]
    x, w = plain_target.put(randn((2, 1, 10, 10), 30), dt), plain_target.put(randn((4, 1, 3, 3), 31), dt)
    y, argmax = ops.conv2d_act_maxpool_forward(x, w, pool_size=2, activation="relu", backend=be)
    dy = plain_target.put(randn(y.shape, 32), dt)
    with pytest.raises(ValueError, match="activation must be one of"):
        ops.conv2d_act_maxpool_forward(x, w, pool_size=2, activation="softmax", backend=be)
    with pytest.raises(ValueError, match="pooling output would be empty"):
        ops.conv2d_act_maxpool_forward(x, w, pool_size=9, backend=be)
    with pytest.raises(ValueError, match=r"y must have shape \(2, 4, 4, 4\)"):
        ops.conv2d_act_maxpool_backward(dy, y[:, :, :3], argmax, x, w, backend=be)
    with pytest.raises(ValueError, match=r"argmax must have shape \(2, 4, 4, 4\)"):
        ops.conv2d_act_maxpool_backward(dy, y, argmax[:1], x, w, backend=be)
    with pytest.raises(TypeError, match="argmax must be int64"):
        ops.conv2d_act_maxpool_backward(dy, y, argmax.astype("int32"), x, w, backend=be)
    bad = argmax.copy()
    bad[1, 2, 3, 3] = 64  # the conv output plane is 8x8
    with pytest.raises(ValueError, match=r"outside the H\*W plane \[0, 64\) of the conv output"):
        ops.conv2d_act_maxpool_backward(dy, y, bad, x, w, activation="relu", need_dx=False, backend=be)
    with pytest.raises(ValueError, match=r"dy .* and the conv output \(2, 4, 8, 8\) must agree on \(N, C\)"):
        ops.conv2d_act_maxpool_backward(dy[:, :3], y[:, :3], argmax[:, :3], x, w, backend=be)


def _classic_pair(backend, dtype, activation, pool):
    model = models.Sequential(backend=backend, dtype=dtype, seed=3)
    model.add(layers.Conv2D(6, 3, activation=activation, input_shape=(14, 14, 1)))
    model.add(layers.MaxPooling2D(**pool))
    model.add(layers.Conv2D(4, 3, activation="relu"))
    model.add(layers.MaxPooling2D(2))
    model.add(layers.Flatten())
    model.add(layers.Dense(5, activation="softmax"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.build()
    return model


@pytest.mark.parametrize(
    "pool", [dict(pool_size=2), dict(pool_size=3, strides=2, padding="same")], ids=["2x2", "3x3-s2-same"]
)
@pytest.mark.parametrize("activation", ["relu", "tanh", None])
def test_model_runs_conv_and_pool_as_one_kernel_pair(plain_target, activation, pool):
    """The plan runs each Conv2D -> MaxPooling2D pair as one step; the gradients and predictions equal those
    of the same model planned without that fusion (unfused kernels: conv, pool, the activation's gradient in
    the pool's backward). Non-overlapping windows: equal bit for bit; overlapping: the activation's gradient
    is applied before the scatter-add instead of after, so equal to rounding."""
    dtype = plain_target.backend.dtypes[0]
    model = _classic_pair(plain_target.backend, dtype, activation, pool)
    conv1, pool1, conv2, pool2 = model.layers[:4]
    steps = model._plan.steps
    assert steps[0].layers == (conv1, pool1) and steps[1].layers == (conv2, pool2)
    rng = np.random.default_rng(0)
    x = rng.random((6, 14, 14, 1)).astype(dtype)
    labels = rng.integers(0, 5, size=6)
    xb, yb = model._to_internal(x), model._labels(labels, 6)
    results = []
    for fused in (True, False):
        model._plan = model._chain_plan(fuse_conv_pool=fused)  # unfused: each pool applies its conv's
        assert fused or model._plan.steps[1].act_from is conv1  # activation gradient instead
        model._gradients(xb, yb)
        grads = [np.array(plain_target.get(g)) for layer in model.layers for g in layer.grads.values()]
        results.append((grads, np.array(plain_target.get(model._forward(xb, training=False, logits=False)))))
    overlapping = pool.get("strides") == 2 and pool["pool_size"] == 3
    for a, b in zip(results[0][0] + [results[0][1]], results[1][0] + [results[1][1]]):
        if overlapping:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        else:
            np.testing.assert_array_equal(a, b)


def test_softmax_conv_is_not_fused():
    model = models.Sequential(backend="reference", seed=1)
    model.add(layers.Conv2D(3, 3, activation="softmax", input_shape=(8, 8, 1)))
    model.add(layers.MaxPooling2D(2))
    model.build()
    steps = model._plan.steps
    assert [s.layers for s in steps] == [(model.layers[0],), (model.layers[1],)]
    assert steps[1].act_from is model.layers[0]
