"""Keras's random image preprocessing layers over the augmentation kernels (:mod:`cnnkern.ops.augment`):
RandomFlip, RandomTranslation, RandomCrop, RandomErasing, RandomRotation, RandomZoom, RandomContrast,
RandomBrightness.

Keras's names, arguments and defaults, with these differences, each refused with a clear error rather than
approximated:

* ``fill_mode`` is ``'constant'`` only (Keras defaults to ``'reflect'``): pixels that come from outside the
  image are ``fill_value`` (0 for the integer shifts, which are copies);
* RandomTranslation with ``interpolation='nearest'`` shifts by whole pixels (the shift rounded), a pure copy
  that fuses with RandomFlip / RandomCrop / RandomErasing into one pass; ``'bilinear'`` (Keras's default)
  goes through the affine kernel;
* RandomCrop needs ``height <= H`` and ``width <= W``; at inference it takes the centred window (Keras resizes
  the largest centred window of the target aspect ratio instead; the two agree when no resizing is needed);
* RandomErasing fills with ``fill_value`` (0 by default), never with noise.

Each layer is active only in training and the identity at inference (RandomCrop: the centre crop). The
per-image parameters are drawn on the host from the layer's generator: ``numpy.random.default_rng(seed)``
when ``seed`` is given, else the model's seeded generator, so a run is reproducible and every backend gives
the same images. Only the model's generator is saved by a BackupAndRestore checkpoint (and rewound after a
non-finite step): a resumed run repeats the uninterrupted one bitwise for layers without a ``seed`` of
their own. The layers have no weights and are not differentiated: put them before the first layer with
weights (backward through one raises).

Consecutive RandomFlip, RandomTranslation('nearest') or RandomCrop, and RandomErasing layers, in that order,
run as one ``augment_shift_forward`` call (:func:`fuse`, called by the model when it builds). RandomContrast
and RandomBrightness stay two calls: each clips to ``value_range``, and one call would clip only once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import ops
from .._typing import BackendArray, Shape
from .base import Context, Layer

Factor = float | Sequence[float]


def _range(name: str, v: Any, lo: float, hi: float) -> tuple[float, float]:
    """Keras's factor: a number f means [-f, f]; a pair (lower, upper) is taken as given; both in [lo, hi]."""
    pair = (
        (-float(v), float(v))
        if isinstance(v, (int, float)) and not isinstance(v, bool)
        else tuple(float(f) for f in v)
        if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(f, (int, float)) for f in v)
        else None
    )
    if pair is None or not all(math.isfinite(f) and lo <= f <= hi for f in pair) or pair[0] > pair[1]:
        raise ValueError(f"{name} must be a number or a pair (lower, upper) in [{lo}, {hi}], got {v!r}")
    return (min(pair), max(pair)) if isinstance(v, (int, float)) else (pair[0], pair[1])


def _constant(fill_mode: str) -> None:
    if fill_mode != "constant":
        raise ValueError(
            f"fill_mode {fill_mode!r} is not supported: cnnkern's augmentation kernels fill with a constant; "
            "pass fill_mode='constant' (Keras defaults to 'reflect')"
        )


def _interpolation(v: str, allowed: tuple[str, ...]) -> str:
    if v not in allowed:
        raise ValueError(f"interpolation must be one of {', '.join(map(repr, allowed))}, got {v!r}")
    return v


class RandomLayer(Layer):
    """Base of the preprocessing layers: the generator, no weights, no backward."""

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
        self.seed = seed
        self._own_rng = None if seed is None else np.random.default_rng(seed)

    @property
    def rng(self) -> np.random.Generator:
        return self._own_rng if self._own_rng is not None else self._ctx.rng

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        self._require_images(in_shape)
        return in_shape

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        raise NotImplementedError(
            f"{self.name} ({type(self).__name__}) has no gradient: put preprocessing layers before the first "
            "layer with weights"
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}

    def _ints(self, a: np.ndarray) -> BackendArray:
        return self._ctx.xp.asarray(np.ascontiguousarray(a, dtype=np.int64))


# --- the integer shifts: one augment_shift_forward call ----------------------------------------------------


class _ShiftParams:
    """The parameters of one augment_shift_forward call, filled in by each layer of a fused chain."""

    def __init__(self, n: int, h: int, w: int) -> None:
        self.flip = np.zeros((n, 2), np.int64)
        self.offset = np.zeros((n, 2), np.int64)
        self.erase = np.zeros((n, 4), np.int64)
        self.out_hw = (h, w)


class ShiftLayer(RandomLayer):
    """A layer whose effect is part of augment_shift_forward; ``_STAGE`` orders them in a fused call (flip,
    then translation or crop, then erasing)."""

    _STAGE = 0

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(seed, **kwargs)
        self._fused: list[ShiftLayer] = []  # the layers after this one that its call also applies
        self._absorbed = False  # applied by an earlier layer's call: the identity here

    def _draw(self, p: _ShiftParams, training: bool) -> None:
        raise NotImplementedError

    def _active(self, training: bool) -> bool:
        return training

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        chain = [self, *self._fused]
        if self._absorbed or not any(layer._active(training) for layer in chain):
            return x
        n, _, h, w = x.shape
        p = _ShiftParams(n, h, w)
        for layer in chain:
            layer._draw(p, training)
        be = self._ctx.backend
        flip, offset, erase = self._ints(p.flip), self._ints(p.offset), self._ints(p.erase)
        return ops.augment_shift_forward(x, flip, offset, erase, out_hw=p.out_hw, backend=be)


class RandomFlip(ShiftLayer):
    """Flips each image left-right and/or up-down with probability 1/2 each (Keras's ``mode``)."""

    _STAGE = 1
    MODES = {"horizontal": (True, False), "vertical": (False, True), "horizontal_and_vertical": (True, True)}

    def __init__(self, mode: str = "horizontal_and_vertical", seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(seed, **kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {', '.join(map(repr, self.MODES))}, got {mode!r}")
        self.mode = mode

    def _draw(self, p: _ShiftParams, training: bool) -> None:
        if training:
            for axis, on in enumerate(self.MODES[self.mode]):
                if on:
                    p.flip[:, axis] = self.rng.integers(0, 2, len(p.flip))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


class RandomTranslation(ShiftLayer):
    """Shifts each image by a fraction of its size drawn from ``height_factor`` / ``width_factor`` (Keras's
    ranges: f means [-f, f]); the uncovered pixels are ``fill_value``. ``interpolation='nearest'`` rounds the
    shift to whole pixels (a copy, fused with flips and erasing); ``'bilinear'`` resamples."""

    _STAGE = 2

    def __init__(
        self,
        height_factor: Factor,
        width_factor: Factor,
        fill_mode: str = "constant",
        interpolation: str = "bilinear",
        seed: int | None = None,
        fill_value: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(seed, **kwargs)
        self.height_factor = _range("height_factor", height_factor, -1.0, 1.0)
        self.width_factor = _range("width_factor", width_factor, -1.0, 1.0)
        _constant(fill_mode)
        self.interpolation = _interpolation(interpolation, ("nearest", "bilinear"))
        self.fill_value = float(fill_value)
        if self.interpolation == "nearest" and self.fill_value != 0.0:
            raise ValueError("interpolation='nearest' fills with 0: fill_value must be 0.0")

    def _shifts(self, n: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        dy = self.rng.uniform(*self.height_factor, n) * h
        dx = self.rng.uniform(*self.width_factor, n) * w
        return dy, dx

    def _draw(self, p: _ShiftParams, training: bool) -> None:
        if training:
            dy, dx = self._shifts(len(p.flip), *p.out_hw)
            p.offset += np.stack([np.round(dy), np.round(dx)], axis=1).astype(np.int64)

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        if self.interpolation == "nearest":
            return super().forward(x, training, logits)
        if not training:
            return x
        n, _, h, w = x.shape
        dy, dx = self._shifts(n, h, w)
        theta = np.zeros((n, 6))
        theta[:, 0] = theta[:, 4] = 1.0
        theta[:, 2], theta[:, 5] = -dx, -dy
        return ops.augment_affine_forward(
            x, self._ctx.asarray(theta), fill_value=self.fill_value, backend=self._ctx.backend
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "height_factor": list(self.height_factor),
            "width_factor": list(self.width_factor),
            "fill_mode": "constant",
            "interpolation": self.interpolation,
            "fill_value": self.fill_value,
        }


class RandomCrop(ShiftLayer):
    """A random ``height`` x ``width`` window of each image in training; the centred one at inference."""

    _STAGE = 2

    def __init__(self, height: int, width: int, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(seed, **kwargs)
        for name, v in (("height", height), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.height, self.width = height, width

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        self._require_images(in_shape)
        c, h, w = in_shape
        if self.height > h or self.width > w:
            raise ValueError(
                f"{self.name}: crop {self.height}x{self.width} is larger than the input {h}x{w}; cnnkern's "
                "RandomCrop does not resize"
            )
        return (c, self.height, self.width)

    def _active(self, training: bool) -> bool:
        return True  # the centre crop at inference changes the shape too

    def _draw(self, p: _ShiftParams, training: bool) -> None:
        n, (h, w) = len(p.flip), p.out_hw
        if training:
            top = self.rng.integers(0, h - self.height + 1, n)
            left = self.rng.integers(0, w - self.width + 1, n)
        else:
            top = np.full(n, (h - self.height) // 2)
            left = np.full(n, (w - self.width) // 2)
        p.offset -= np.stack([top, left], axis=1)
        p.out_hw = (self.height, self.width)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width}


class RandomErasing(ShiftLayer):
    """With probability ``factor``, sets a random box of each image to 0: its area a fraction of the image
    drawn from ``scale``, its aspect ratio h/w log-uniform in [0.3, 3.3] (torchvision's), clipped to the
    image."""

    _STAGE = 3

    def __init__(
        self,
        factor: float = 1.0,
        scale: Sequence[float] = (0.02, 0.33),
        fill_value: float | None = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(seed, **kwargs)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0.0 <= factor <= 1.0:
            raise ValueError(f"factor must be a probability in [0, 1], got {factor!r}")
        lo, hi = _range("scale", scale, 0.0, 1.0)
        if isinstance(scale, (int, float)):
            raise ValueError(f"scale must be a pair (lower, upper) of area fractions, got {scale!r}")
        if fill_value not in (0, 0.0):
            raise ValueError(f"fill_value must be 0.0 (cnnkern erases to zero), got {fill_value!r}")
        self.factor, self.scale = float(factor), (lo, hi)

    def _draw(self, p: _ShiftParams, training: bool) -> None:
        if not training:
            return
        n, (h, w) = len(p.flip), p.out_hw
        area = self.rng.uniform(*self.scale, n) * h * w
        ratio = np.exp(self.rng.uniform(math.log(0.3), math.log(3.3), n))
        eh = np.minimum(np.round(np.sqrt(area * ratio)), h).astype(np.int64)
        ew = np.minimum(np.round(np.sqrt(area / ratio)), w).astype(np.int64)
        top = self.rng.integers(0, h - eh + 1)
        left = self.rng.integers(0, w - ew + 1)
        on = self.rng.random(n) < self.factor
        p.erase[:] = np.stack([top, left, eh * on, ew * on], axis=1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "scale": list(self.scale), "fill_value": 0.0}


# --- bilinear: augment_affine_forward ---------------------------------------------------------------------


class AffineLayer(RandomLayer):
    """RandomRotation and RandomZoom: a per-image affine map about the image centre, bilinear."""

    def __init__(
        self, fill_mode: str, interpolation: str, fill_value: float, seed: int | None, **kwargs: Any
    ) -> None:
        super().__init__(seed, **kwargs)
        _constant(fill_mode)
        self.interpolation = _interpolation(interpolation, ("bilinear",))
        self.fill_value = float(fill_value)
        if not math.isfinite(self.fill_value):
            raise ValueError(f"fill_value must be finite, got {fill_value!r}")

    def _matrices(self, n: int, h: int, w: int) -> np.ndarray:
        """(n, 2, 2): each output offset from the centre maps to matrix @ offset in the input."""
        raise NotImplementedError

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        if not training:
            return x
        n, _, h, w = x.shape
        m = self._matrices(n, h, w)
        cx, cy = (w - 1) / 2, (h - 1) / 2
        theta = np.empty((n, 6))
        theta[:, [0, 1, 3, 4]] = m.reshape(n, 4)
        theta[:, 2] = cx - m[:, 0, 0] * cx - m[:, 0, 1] * cy
        theta[:, 5] = cy - m[:, 1, 0] * cx - m[:, 1, 1] * cy
        return ops.augment_affine_forward(
            x, self._ctx.asarray(theta), fill_value=self.fill_value, backend=self._ctx.backend
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "fill_mode": "constant",
            "interpolation": self.interpolation,
            "fill_value": self.fill_value,
        }


class RandomRotation(AffineLayer):
    """Rotates each image about its centre by ``factor`` of a full turn (f: [-f, f]), as Keras."""

    def __init__(
        self,
        factor: Factor,
        fill_mode: str = "constant",
        interpolation: str = "bilinear",
        seed: int | None = None,
        fill_value: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(fill_mode, interpolation, fill_value, seed, **kwargs)
        self.factor = _range("factor", factor, -1.0, 1.0)

    def _matrices(self, n: int, h: int, w: int) -> np.ndarray:
        angle = self.rng.uniform(*self.factor, n) * 2 * math.pi
        c, s = np.cos(angle), np.sin(angle)
        return np.stack([np.stack([c, -s], 1), np.stack([s, c], 1)], 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": list(self.factor)}


class RandomZoom(AffineLayer):
    """Zooms each image about its centre: a factor f > 0 zooms out (shows 1 + f times the image), f < 0 in,
    as Keras; ``width_factor=None`` keeps the aspect ratio (the height's zoom for both)."""

    def __init__(
        self,
        height_factor: Factor,
        width_factor: Factor | None = None,
        fill_mode: str = "constant",
        interpolation: str = "bilinear",
        seed: int | None = None,
        fill_value: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(fill_mode, interpolation, fill_value, seed, **kwargs)
        self.height_factor = _range("height_factor", height_factor, -1.0, 1e3)
        self.width_factor = None if width_factor is None else _range("width_factor", width_factor, -1.0, 1e3)

    def _matrices(self, n: int, h: int, w: int) -> np.ndarray:
        zy = 1.0 + self.rng.uniform(*self.height_factor, n)
        zx = zy if self.width_factor is None else 1.0 + self.rng.uniform(*self.width_factor, n)
        zero = np.zeros(n)
        return np.stack([np.stack([zx, zero], 1), np.stack([zero, zy], 1)], 1)

    def get_config(self) -> dict[str, Any]:
        wf = None if self.width_factor is None else list(self.width_factor)
        return {**super().get_config(), "height_factor": list(self.height_factor), "width_factor": wf}


# --- colour: augment_color_forward -------------------------------------------------------------------------


class ColorLayer(RandomLayer):
    """RandomContrast and RandomBrightness: one augment_color_forward call each."""

    def __init__(self, value_range: Sequence[float], seed: int | None, **kwargs: Any) -> None:
        super().__init__(seed, **kwargs)
        ok = isinstance(value_range, (tuple, list)) and len(value_range) == 2
        vr = tuple(float(v) for v in value_range) if ok else ()
        if not ok or not all(math.isfinite(v) for v in vr) or vr[0] >= vr[1]:
            raise ValueError(f"value_range must be a pair (low, high) with low < high, got {value_range!r}")
        self.value_range = (vr[0], vr[1])

    def _draw(self, n: int, contrast: np.ndarray, brightness: np.ndarray) -> None:
        raise NotImplementedError

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        if not training:
            return x
        n = x.shape[0]
        contrast, brightness = np.ones(n), np.zeros(n)
        self._draw(n, contrast, brightness)
        low, high = self.value_range
        return ops.augment_color_forward(
            x,
            self._ctx.asarray(contrast),
            self._ctx.asarray(brightness),
            low=low,
            high=high,
            backend=self._ctx.backend,
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "value_range": list(self.value_range)}


class RandomContrast(ColorLayer):
    """Scales each (image, channel) about its mean by a factor in [1 - lower, 1 + upper] (``factor`` f:
    lower = upper = f), then clips to ``value_range``, as Keras."""

    def __init__(
        self, factor: Factor, value_range: Sequence[float] = (0, 255), seed: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(value_range, seed, **kwargs)
        # Keras's (lower, upper), each >= 0 and lower <= 1: the factor is drawn from [1 - lower, 1 + upper]
        number = isinstance(factor, (int, float)) and not isinstance(factor, bool)
        raw: Any = [factor, factor] if number else factor
        ok = isinstance(raw, (tuple, list)) and len(raw) == 2
        ok = ok and all(isinstance(f, (int, float)) and math.isfinite(f) and f >= 0 for f in raw)
        if not ok or float(raw[0]) > 1.0:
            raise ValueError(
                f"factor must be a number or a pair (lower, upper), each >= 0 and lower <= 1; got {factor!r}"
            )
        lo, hi = float(raw[0]), float(raw[1])
        self.factor = (lo, hi)

    def _draw(self, n: int, contrast: np.ndarray, brightness: np.ndarray) -> None:
        contrast *= self.rng.uniform(1.0 - self.factor[0], 1.0 + self.factor[1], n)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": list(self.factor)}


class RandomBrightness(ColorLayer):
    """Adds to each image a delta drawn from ``factor`` (f: [-f, f], in [-1, 1]) times the width of
    ``value_range``, then clips to it, as Keras."""

    def __init__(
        self, factor: Factor, value_range: Sequence[float] = (0, 255), seed: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(value_range, seed, **kwargs)
        self.factor = _range("factor", factor, -1.0, 1.0)

    def _draw(self, n: int, contrast: np.ndarray, brightness: np.ndarray) -> None:
        span = self.value_range[1] - self.value_range[0]
        brightness += self.rng.uniform(*self.factor, n) * span

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": list(self.factor)}


PREPROCESSING_LAYERS: tuple[type[Layer], ...] = (
    RandomFlip,
    RandomTranslation,
    RandomCrop,
    RandomErasing,
    RandomRotation,
    RandomZoom,
    RandomContrast,
    RandomBrightness,
)


def fuse(layers: Sequence[Layer]) -> None:
    """Let the first of each run of consecutive shift layers in stage order (RandomFlip, then one
    RandomTranslation('nearest') or RandomCrop, then RandomErasing), all without a seed of their own (they
    then draw from one generator, in layer order, as they would one by one), apply the whole run in one
    kernel call; the others become the identity. Called by the model once its layers are built."""
    shifts = [layer if isinstance(layer, ShiftLayer) and _fusable(layer) else None for layer in layers]
    for layer in layers:
        if isinstance(layer, ShiftLayer):
            layer._fused, layer._absorbed = [], False
    i = 0
    while i < len(shifts):
        head = shifts[i]
        run: list[ShiftLayer] = [] if head is None else [head]
        while head is not None and i + len(run) < len(shifts):
            nxt = shifts[i + len(run)]
            if nxt is None or nxt._STAGE <= run[-1]._STAGE:
                break
            run.append(nxt)
        if head is not None and len(run) > 1 and all(r.seed is None for r in run):
            head._fused = run[1:]
            for r in run[1:]:
                r._absorbed = True
        i += max(len(run), 1)


def _fusable(layer: ShiftLayer) -> bool:
    return not (isinstance(layer, RandomTranslation) and layer.interpolation != "nearest")
