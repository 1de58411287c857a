"""The augmentation kernels on every backend against the float64 reference, and the reference against
independent formulas (NumPy flips, torch's grid_sample where torch is installed).

Flips, translations, crops and erasing are copies, so every backend must match exactly; the bilinear affine
kernel and the contrast / brightness pass carry float32 rounding: the position error of a float32
coordinate (a few ulps of up to H + W) times the image's slope bounds the bilinear one.
Widths cross the vector tails (1, 3, 7, 8, 9, 15, 16, 17, 33).
"""

import math

import numpy as np
import pytest

from cnnkern import ops

from .cases import randn
from .compare import EPS32, assert_close, assert_equal, elementwise_tol, scaled
from .conftest import load_backend

SHAPES = [(1, 1, 1, 1), (2, 3, 7, 9), (3, 1, 8, 17), (1, 2, 15, 16), (2, 1, 33, 7), (2, 1, 28, 28)]
IDS = ["x".join(map(str, s)) for s in SHAPES]


def shift_params(shape, seed, out_hw=None):
    """Random flips, offsets reaching past every edge, and erase boxes (some empty, some past the edge)."""
    n, _, h, w = shape
    oh, ow = out_hw or (h, w)
    rng = np.random.default_rng(seed)
    flip = rng.integers(0, 2, (n, 2))
    offset = np.stack([rng.integers(-h - 1, oh + 2, n), rng.integers(-w - 1, ow + 2, n)], axis=1)
    erase = np.stack(
        [
            rng.integers(-2, oh + 1, n),
            rng.integers(-2, ow + 1, n),
            rng.integers(0, oh + 1, n),
            rng.integers(0, ow + 1, n),
        ],
        axis=1,
    )
    return flip, offset, erase


def affine_params(n, h, w, seed):
    """Rotation up to 40 degrees, zoom 0.7-1.3 and a shift of up to a quarter of the image, about the centre,
    rounded to float32 (so the float64 reference samples at the same map)."""
    rng = np.random.default_rng(seed)
    theta = np.empty((n, 6))
    for b in range(n):
        ang, zoom = rng.uniform(-0.7, 0.7), rng.uniform(0.7, 1.3, 2)
        ty, tx = rng.uniform(-0.25, 0.25, 2) * (h, w)
        ca, sa = math.cos(ang), math.sin(ang)
        cy, cx = (h - 1) / 2, (w - 1) / 2
        a0, a1, a3, a4 = ca * zoom[1], -sa * zoom[0], sa * zoom[1], ca * zoom[0]
        theta[b] = (a0, a1, cx - a0 * cx - a1 * cy - tx, a3, a4, cy - a3 * cx - a4 * cy - ty)
    return theta.astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
@pytest.mark.parametrize("resize", ["same", "crop", "pad"])
def test_augment_shift_forward(target, shape, resize):
    n, c, h, w = shape
    out_hw = {"same": None, "crop": (max(1, h - 2), max(1, w - 3)), "pad": (h + 3, w + 2)}[resize]
    x = randn(shape, 1)
    flip, offset, erase = shift_params(shape, 2, out_hw)
    want = ops.augment_shift_forward(x, flip, offset, erase, out_hw=out_hw, backend="reference")
    for dt in target.dtypes:
        ints = [target.put(a, "int64") for a in (flip, offset, erase)]
        got = target.call("augment_shift_forward", target.put(x, dt), *ints, out_hw=out_hw)
        assert_equal(target.get(got), want, what=f"{target.id} {dt}", dtype=dt)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
@pytest.mark.parametrize("fill_value", [0.0, -1.5])
def test_augment_affine_forward(target, shape, fill_value):
    n, c, h, w = shape
    x = randn(shape, 3)
    theta = affine_params(n, h, w, 4)
    want = ops.augment_affine_forward(x, theta, fill_value=fill_value, backend="reference")
    # a few ulps of a coordinate of up to H + W, times the largest step between neighbours
    slope = 2 * max(np.abs(x).max(), abs(fill_value))
    tol = scaled("float32", 8 * EPS32 * (h + w + 2) * slope, 16 * EPS32)
    for dt in target.dtypes:
        got = target.call(
            "augment_affine_forward", target.put(x, dt), target.put(theta, dt), fill_value=fill_value
        )
        assert_close(target.get(got), want, **scaled(dt, **tol), what=f"{target.id} {dt}", dtype=dt)


def test_augment_affine_integer_shift_is_exact(target):
    """At an integer translation every coordinate is exact, so the bilinear kernel equals the shift kernel."""
    shape = (3, 2, 9, 17)
    x = randn(shape, 5)
    offset = np.array([[1, -2], [-3, 4], [0, 0]])
    theta = np.array([[1, 0, -dx, 0, 1, -dy] for dy, dx in offset], np.float64)
    zeros = np.zeros((3, 2), np.int64)
    want = ops.augment_shift_forward(x, zeros, offset, np.zeros((3, 4), np.int64), backend="reference")
    for dt in target.dtypes:
        got = target.call("augment_affine_forward", target.put(x, dt), target.put(theta, dt))
        assert_equal(target.get(got), want, what=f"{target.id} {dt}", dtype=dt)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_augment_color_forward(target, shape):
    n = shape[0]
    x = randn(shape, 6, scale=0.3, offset=0.5)
    rng = np.random.default_rng(7)
    contrast = rng.uniform(0.5, 1.5, n).astype(np.float32).astype(np.float64)
    brightness = rng.uniform(-0.2, 0.2, n).astype(np.float32).astype(np.float64)
    want = ops.augment_color_forward(x, contrast, brightness, low=0.0, high=1.0, backend="reference")
    for dt in target.dtypes:
        args = (target.put(x, dt), target.put(contrast, dt), target.put(brightness, dt))
        got = target.call("augment_color_forward", *args, low=0.0, high=1.0)
        # the mean's rounding moves every value by up to (1 - contrast) of it: a few ulps of |x|'s scale
        assert_close(
            target.get(got), want, **elementwise_tol(dt, ulps=32), what=f"{target.id} {dt}", dtype=dt
        )


def test_empty_batch(target):
    x = np.zeros((0, 2, 3, 4))
    i2, i4 = np.zeros((0, 2), np.int64), np.zeros((0, 4), np.int64)
    for dt in target.dtypes:
        got = target.call(
            "augment_shift_forward", target.put(x, dt), *(target.put(a) for a in (i2, i2, i4)), out_hw=2
        )
        assert target.get(got).shape == (0, 2, 2, 2)


# ---- the reference against independent formulas ---------------------------------------------------------


def test_reference_shift_matches_numpy():
    x = randn((2, 3, 5, 6), 8)
    flip = np.array([[1, 0], [1, 1]])
    offset = np.array([[0, 0], [2, -1]])
    none = np.zeros((2, 4), np.int64)
    y = ops.augment_shift_forward(x, flip, offset, none, backend="reference")
    np.testing.assert_array_equal(y[0], x[0, :, :, ::-1])
    want = np.zeros((3, 5, 6))
    want[:, 2:, :5] = x[1, :, ::-1, ::-1][:, :3, 1:]
    np.testing.assert_array_equal(y[1], want)
    # a crop at (top 1, left 2) of size (3, 3), with a 2x1 box erased at the crop's (1, 1)
    erase = np.array([[1, 1, 2, 1], [0, 0, 0, 0]])
    y = ops.augment_shift_forward(
        x, np.zeros((2, 2), np.int64), -np.array([[1, 2], [1, 2]]), erase, out_hw=3, backend="reference"
    )
    want = x[:, :, 1:4, 2:5].copy()
    want[0, :, 1:3, 1] = 0
    np.testing.assert_array_equal(y, want)


def test_reference_color_by_hand():
    """A plane [0, 2]: mean 1; contrast 2 gives [-1, 3]; brightness 0.5 [-0.5, 3.5]; clipped to [0, 3]."""
    x = np.array([[[[0.0, 2.0]]]])
    y = ops.augment_color_forward(x, np.array([2.0]), np.array([0.5]), low=0.0, high=3.0, backend="reference")
    np.testing.assert_array_equal(y, [[[[0.0, 3.0]]]])


def test_reference_affine_matches_torch_grid_sample():
    """torch's bilinear grid_sample with align_corners=True and zero padding reads 0 for every tap outside the
    image, the same rule, at coordinates normalised as 2 * s / (L - 1) - 1."""
    torch = pytest.importorskip("torch", reason="torch is not installed: pip install 'cnnkern[torch]'")
    n, c, h, w = 3, 2, 11, 14
    x = randn((n, c, h, w), 9)
    theta = affine_params(n, h, w, 10)
    ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    sx = theta[:, 0, None, None] * jj + theta[:, 1, None, None] * ii + theta[:, 2, None, None]
    sy = theta[:, 3, None, None] * jj + theta[:, 4, None, None] * ii + theta[:, 5, None, None]
    grid = np.stack([2 * sx / (w - 1) - 1, 2 * sy / (h - 1) - 1], axis=-1)
    want = torch.nn.functional.grid_sample(
        torch.from_numpy(x), torch.from_numpy(grid), mode="bilinear", padding_mode="zeros", align_corners=True
    ).numpy()
    got = ops.augment_affine_forward(x, theta, backend="reference")
    assert_close(got, want, atol=1e-12, rtol=1e-12, what="reference vs torch grid_sample")


def test_cpp_affine_is_bitwise_the_same_on_every_simd_path():
    """The AVX2 affine loop performs the scalar loop's operations in its order (gathers for the taps)."""
    be = load_backend("cpp")
    paths = [p for p in ("scalar", "avx2", "avx512") if p in be.supported_simd()]
    if len(paths) < 2:
        pytest.skip(f"the CPU runs only the {paths} SIMD path(s)")
    x = randn((3, 2, 13, 19), 12).astype(np.float32)
    theta = affine_params(3, 13, 19, 13).astype(np.float32)
    previous, outs = be.simd(), {}
    try:
        for path in paths:
            be.set_simd(path)
            outs[path] = ops.augment_affine_forward(x, theta, fill_value=0.25, backend=be)
    finally:
        be.set_simd(previous)
    for path in paths[1:]:
        assert_equal(outs[path], outs["scalar"], what=f"cpp-{path} vs cpp-scalar", dtype="float32")
