"""The random preprocessing layers (cnnkern/layers/preprocessing.py): identity at inference, Keras's
formulas in training (checked on inputs where the answer is known independently), seeded reproducibility,
the fused shift chain equal to the layers one by one, saving and loading, training through them."""

import numpy as np
import pytest

from cnnkern import callbacks, layers, models

from .cases import randn

L = layers


def _model(*pre, shape=(6, 6, 2), seed=0, backend="reference", dtype="float64"):
    m = models.Sequential([*pre], seed=seed, backend=backend, dtype=dtype)
    m.build(shape)
    return m


def _run(m, x, training=True):
    """The model's forward on NHWC images ``x``, back in NHWC."""
    out = m._forward(m._to_internal(x), training=training, logits=False)
    return np.asarray(out).transpose(0, 2, 3, 1)


ALL = [
    lambda: L.RandomFlip(),
    lambda: L.RandomTranslation(0.2, 0.3, interpolation="nearest"),
    lambda: L.RandomTranslation(0.2, 0.3),
    lambda: L.RandomErasing(),
    lambda: L.RandomRotation(0.1),
    lambda: L.RandomZoom(0.2),
    lambda: L.RandomContrast(0.3, value_range=(-5, 5)),
    lambda: L.RandomBrightness(0.1, value_range=(-5, 5)),
]


@pytest.mark.parametrize("make", ALL, ids=lambda f: repr(f()).split()[0].split(".")[-1])
def test_identity_at_inference_and_random_in_training(make):
    x = randn((4, 6, 6, 2), 1)
    m = _model(make())
    np.testing.assert_array_equal(_run(m, x, training=False), x)
    np.testing.assert_array_equal(m.predict(x), x)
    assert not np.array_equal(_run(m, x), x)


def test_random_crop_trains_on_windows_and_infers_the_centre():
    x = randn((5, 7, 8, 1), 2)
    m = _model(L.RandomCrop(4, 5), shape=(7, 8, 1))
    np.testing.assert_array_equal(_run(m, x, training=False), x[:, 1:5, 1:6])
    y = _run(m, x)
    for b in range(5):  # each output is one of the windows of its image
        wins = [x[b, t : t + 4, l : l + 5] for t in range(4) for l in range(4)]
        assert any(np.array_equal(y[b], w) for w in wins)
    with pytest.raises(ValueError, match="larger than the input"):
        _model(L.RandomCrop(8, 5), shape=(7, 8, 1))


def test_flip_gives_each_image_one_of_its_flips():
    x = randn((16, 5, 6, 1), 3)
    y = _run(_model(L.RandomFlip("horizontal"), shape=(5, 6, 1)), x)
    seen = set()
    for b in range(16):
        same, flipped = np.array_equal(y[b], x[b]), np.array_equal(y[b], x[b, :, ::-1])
        assert same or flipped
        seen.add(flipped)
    assert seen == {True, False}


def test_translation_nearest_is_an_integer_shift_in_range():
    x = randn((8, 10, 10, 1), 4)
    y = _run(_model(L.RandomTranslation(0.2, 0.2, interpolation="nearest"), shape=(10, 10, 1)), x)
    for b in range(8):
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                want = np.zeros_like(x[b])
                want[max(dy, 0) : 10 + min(dy, 0), max(dx, 0) : 10 + min(dx, 0)] = x[
                    b, max(-dy, 0) : 10 - max(dy, 0), max(-dx, 0) : 10 - max(dx, 0)
                ]
                found |= np.array_equal(y[b], want)
        assert found, f"image {b} is not a shift by at most 2 pixels"


def test_rotation_by_a_quarter_turn_is_rot90():
    """factor (0.25, 0.25): a quarter turn, which Keras's matrix makes np.rot90 of each (H, W) plane."""
    x = randn((2, 7, 7, 3), 5)
    y = _run(_model(L.RandomRotation((0.25, 0.25)), shape=(7, 7, 3)), x)
    np.testing.assert_allclose(y, np.rot90(x, 1, axes=(1, 2)), atol=1e-12)


def test_zoom_in_by_two_samples_the_centre():
    """height_factor -0.5: zoom 0.5, so output pixel i samples input 0.5 i + 1 (centre 2 of 5)."""
    x = randn((1, 5, 5, 1), 6)
    y = _run(_model(L.RandomZoom((-0.5, -0.5)), shape=(5, 5, 1)), x)[0, :, :, 0]
    p = x[0, :, :, 0]
    for i, j in [(0, 0), (2, 2), (4, 4), (0, 4)]:
        assert y[i, j] == pytest.approx(p[i // 2 + 1, j // 2 + 1], abs=1e-12)
    assert y[1, 1] == pytest.approx(p[1:3, 1:3].mean(), abs=1e-12)


def test_contrast_and_brightness_formulas():
    x = randn((3, 4, 4, 2), 7)
    y = _run(_model(L.RandomBrightness((0.1, 0.1), value_range=(-1, 1)), shape=(4, 4, 2)), x)
    np.testing.assert_allclose(y, np.clip(x + 0.2, -1, 1), atol=1e-12)
    y = _run(_model(L.RandomContrast((0.5, 0.0), value_range=(-9, 9)), shape=(4, 4, 2)), x)
    mean = x.mean(axis=(1, 2), keepdims=True)
    factor = ((y - mean) / (x - mean)).reshape(3, -1)  # one contrast factor per image, in [0.5, 1]
    np.testing.assert_allclose(factor, factor[:, :1] * np.ones_like(factor), atol=1e-9)
    assert ((factor >= 0.5 - 1e-9) & (factor <= 1 + 1e-9)).all() and np.ptp(factor[:, 0]) > 0


def test_seeded_and_reproducible():
    x = randn((4, 6, 6, 2), 8)
    pre = lambda: [L.RandomFlip(), L.RandomRotation(0.2), L.RandomContrast(0.2, value_range=(-9, 9))]  # noqa: E731
    a, b, c = (_run(_model(*pre(), seed=s), x) for s in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # a layer's own seed makes it independent of the model's
    d, e = (_run(_model(L.RandomFlip(seed=5), seed=s), x) for s in (1, 2))
    np.testing.assert_array_equal(d, e)


def test_fused_chain_equals_the_layers_one_by_one():
    x = randn((6, 9, 10, 3), 9)
    pre = lambda: [L.RandomFlip(), L.RandomTranslation(0.3, 0.3, interpolation="nearest"), L.RandomErasing()]  # noqa: E731
    fused = _model(*pre(), shape=(9, 10, 3), seed=3)
    assert fused.layers[0]._fused == fused.layers[1:] and fused.layers[2]._absorbed
    single = _model(*pre(), shape=(9, 10, 3), seed=3)
    layers.fuse_preprocessing([])  # nothing to do
    for layer in single.layers:
        layer._fused, layer._absorbed = [], False
    np.testing.assert_array_equal(_run(fused, x), _run(single, x))


@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_backends_agree_with_the_reference(backend):
    """Same seed, same images: exact for the shifts, within float32 rounding for the bilinear maps."""
    pytest.importorskip("numba") if backend == "numba" else None
    x = randn((4, 9, 9, 2), 10).astype(np.float32)
    for pre, atol in [(lambda: [L.RandomFlip(), L.RandomCrop(7, 6), L.RandomErasing()], 0.0),
                      (lambda: [L.RandomRotation(0.2), L.RandomZoom(0.2)], 1e-4)]:  # fmt: skip
        want = _run(_model(*pre(), shape=(9, 9, 2), dtype="float32"), x)
        got = _run(_model(*pre(), shape=(9, 9, 2), dtype="float32", backend=backend), x)
        np.testing.assert_allclose(got, want, atol=atol, rtol=0)


def test_save_and_load(tmp_path):
    pre = [
        L.RandomFlip("vertical", seed=4),
        L.RandomTranslation((-0.1, 0.2), 0.1, interpolation="nearest"),
        L.RandomErasing(0.5, scale=(0.1, 0.2)),
        L.RandomRotation(0.1, fill_value=0.5),
        L.RandomZoom(0.1, (-0.2, 0.3)),
        L.RandomContrast(0.2, value_range=(0, 1)),
        L.RandomBrightness(0.1, value_range=(0, 1)),
        L.RandomCrop(5, 4),
    ]
    m = models.Sequential([*pre, L.Flatten(), L.Dense(3)], seed=1, backend="reference")
    m.build((6, 6, 1))
    m.save(tmp_path / "m.npz")
    back = models.load_model(tmp_path / "m.npz", backend="reference")
    assert back.get_config() == m.get_config()
    x = randn((2, 6, 6, 1), 11)
    np.testing.assert_array_equal(back.predict(x), m.predict(x))


def test_fit_through_augmentation_is_reproducible():
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 8, 8, 1)), rng.integers(0, 3, 32)

    def train():
        pre = [L.RandomFlip("horizontal"), L.RandomTranslation(0.1, 0.1, interpolation="nearest")]
        m = models.Sequential(
            [*pre, L.Conv2D(2, 3), L.Flatten(), L.Dense(3, activation="softmax")], seed=2, backend="reference"
        )
        m.build((8, 8, 1))
        m.compile("sgd")
        m.fit(x, y, batch_size=8, epochs=1, verbose=0)
        return m.get_weights()

    for a, b in zip(train(), train()):
        np.testing.assert_array_equal(a, b)


class _Interrupt(Exception):
    pass


class _StopAfter(callbacks.Callback):
    def __init__(self, k):
        self.k = k

    def on_train_batch_end(self, batch, logs=None):
        self.k -= 1
        if self.k == 0:
            raise _Interrupt


def test_interrupted_and_resumed_fit_repeats_the_augmentation(tmp_path):
    """The unseeded layers draw from the model's generator, which the checkpoint saves: a run cut after
    step 3 and resumed ends with the uninterrupted run's weights, bitwise."""
    rng = np.random.default_rng(1)
    x, y = rng.random((20, 8, 8, 1)), rng.integers(0, 3, 20)

    def run(path, stop=None):
        pre = [L.RandomFlip(), L.RandomTranslation(0.2, 0.2, interpolation="nearest"), L.RandomRotation(0.1)]
        m = models.Sequential([*pre, L.Conv2D(2, 3), L.Flatten(), L.Dense(3, activation="softmax")], seed=3)
        m.build((8, 8, 1))
        m.compile("sgd")
        cbs = [callbacks.BackupAndRestore(path, save_freq=1)] + ([_StopAfter(stop)] if stop else [])
        m.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=cbs)
        return m.get_weights()

    full = run(tmp_path / "full")
    with pytest.raises(_Interrupt):
        run(tmp_path / "cut", stop=7)
    for a, b in zip(full, run(tmp_path / "cut")):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments_and_placement():
    with pytest.raises(ValueError, match="fill_mode"):
        L.RandomRotation(0.1, fill_mode="reflect")
    with pytest.raises(ValueError, match="mode"):
        L.RandomFlip("diagonal")
    with pytest.raises(ValueError, match="height_factor"):
        L.RandomTranslation(1.5, 0.1)
    with pytest.raises(ValueError, match="value_range"):
        L.RandomBrightness(0.1, value_range=(1, 0))
    m = models.Sequential(
        [L.Conv2D(2, 3), L.RandomFlip(), L.Flatten(), L.Dense(2, activation="softmax")], backend="reference"
    )
    m.build((6, 6, 1))
    m.compile("sgd")
    with pytest.raises(NotImplementedError, match="before the first layer with weights"):
        m.fit(np.zeros((4, 6, 6, 1)), np.zeros(4, np.int64), epochs=1, verbose=0)
