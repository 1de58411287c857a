"""Layers without a kernel family of their own (data movement and elementwise arithmetic the array module
does): :class:`Flatten`, :class:`Reshape`, :class:`ZeroPadding2D` (reshaping and padding),
:class:`Rescaling` and :class:`Dropout`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._typing import BackendArray, Shape
from .base import ChannelsFirstMixin, Context, Layer, _data_format, keras_shape


class Flatten(Layer):
    """(N, C, H, W) -> (N, C·H·W) in C, H, W order (a view: no copy); backward reshapes back."""

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        return (int(np.prod(in_shape)),)

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))  # -1 cannot be inferred for N = 0

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        return dy.reshape((dy.shape[0], *self.in_shape))


class Dropout(Layer):
    """In training, zero each value with probability ``rate`` and scale the rest by 1/(1−rate) (inverted
    dropout, as Keras); identity at inference. The mask is drawn from the model's generator."""

    def __init__(self, rate: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0.0 <= rate < 1.0:
            raise ValueError(f"rate must be a number in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self._mask: BackendArray | None = None
        # host arrays reused from step to step (draws, keep, mask): fresh ones of a few MB each made glibc
        # hand pages back and fault them in again at every step (all_conv at batch 32, one thread: ~1050
        # page faults and ~2 ms of its ~30 ms step, all in its first dropout layer)
        self._scratch: dict[str, np.ndarray] = {}

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        buf = self._scratch.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._scratch[name] = np.empty(shape, dtype)
        return buf

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        if not training or self.rate == 0.0:
            return x
        draws = self._buffer("draws", tuple(x.shape), np.float64)
        self._ctx.rng.random(out=draws)  # the same stream as rng.random(x.shape)
        return self.apply_mask(x, draws)

    def apply_mask(self, x: BackendArray, draws: np.ndarray) -> BackendArray:
        """x times the mask of ``draws`` (uniform in [0, 1), x's shape): 0 where a draw is below ``rate``,
        else 1/(1−rate), kept for the backward. The mask is built in x's dtype directly (the same values as
        a float64 mask cast down); the distributed strategy passes its share of the global batch's draws.
        The mask's host array is this layer's, rewritten by the next training forward (by then the backward
        that read it has run)."""
        shape, dtype = tuple(draws.shape), np.dtype(x.dtype)
        keep = np.greater_equal(draws, self.rate, out=self._buffer("keep", shape, np.bool_))
        mask = np.multiply(keep, 1.0 / (1.0 - self.rate), out=self._buffer("mask", shape, dtype), dtype=dtype)
        self._mask = self._ctx.asarray(mask)
        return x * self._mask

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        if self._mask is None:
            return dy
        mask, self._mask = self._mask, None
        return dy * mask

    def _clear(self) -> None:
        self._mask = None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate}


class Reshape(Layer):
    """Reshape each sample to ``target_shape`` ((H, W, C) or (features,), Keras's order; one entry may be
    -1). Elements are taken in the channel-major order of :class:`Flatten` (C, H, W), so a Flatten
    followed by a Reshape back to the image shape is the identity, as in Keras; with more than one channel
    the element order differs from Keras's (H, W, C) as Flatten's does."""

    def __init__(self, target_shape: tuple[int, ...] | list[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        shape = tuple(target_shape) if isinstance(target_shape, (tuple, list)) else None
        if (
            shape is None
            or len(shape) not in (1, 3)
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in shape)
            or any(d < 1 and d != -1 for d in shape)
            or list(shape).count(-1) > 1
        ):
            raise ValueError(
                f"target_shape must be (H, W, C) or (features,) of positive ints (one may be -1), got "
                f"{target_shape!r}"
            )
        self.target_shape = tuple(int(d) for d in shape)

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        n = int(np.prod(in_shape))
        known = int(np.prod([d for d in self.target_shape if d != -1]))
        shape = tuple(n // known if d == -1 else d for d in self.target_shape)
        if int(np.prod(shape)) != n:
            raise ValueError(
                f"{self.name}: cannot reshape per-sample shape {keras_shape(in_shape)[1:]} ({n} values) to "
                f"target_shape {self.target_shape}"
            )
        return (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        assert self.output_shape is not None  # built before it runs
        return x.reshape((x.shape[0], *self.output_shape))

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        return dy.reshape((dy.shape[0], *self.in_shape))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": list(self.target_shape)}


def _paddings(v: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    def ok(i: Any) -> bool:
        return isinstance(i, (int, np.integer)) and not isinstance(i, bool) and bool(i >= 0)

    if ok(v):
        return ((int(v), int(v)), (int(v), int(v)))
    if isinstance(v, (tuple, list)) and len(v) == 2:
        if all(ok(i) for i in v):
            return ((int(v[0]), int(v[0])), (int(v[1]), int(v[1])))
        if all(isinstance(p, (tuple, list)) and len(p) == 2 and all(ok(i) for i in p) for p in v):
            return ((int(v[0][0]), int(v[0][1])), (int(v[1][0]), int(v[1][1])))
    raise ValueError(
        f"padding must be an int >= 0, a pair (rows, cols) or ((top, bottom), (left, right)), got {v!r}"
    )


class ZeroPadding2D(ChannelsFirstMixin, Layer):
    """Zero rows and columns around each image: ``padding`` an int, (rows, cols) symmetric, or
    ((top, bottom), (left, right)), as Keras."""

    def __init__(
        self,
        padding: int | tuple[int, int] | tuple[tuple[int, int], tuple[int, int]] | list[Any] = (1, 1),
        data_format: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format)  # see ChannelsFirstMixin
        self.padding = _paddings(padding)

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        self._require_images(in_shape)
        c, h, w = in_shape
        (t, b), (l, r) = self.padding
        return (c, h + t + b, w + l + r)

    def _forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        (t, b), (l, r) = self.padding
        n, c, h, w = x.shape
        y = self._ctx.xp.zeros((n, c, h + t + b, w + l + r), x.dtype)
        y[:, :, t : t + h, l : l + w] = x
        return y

    def _backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        (t, _), (l, _) = self.padding
        _, h, w = self.in_shape
        return self._ctx.xp.ascontiguousarray(dy[:, :, t : t + h, l : l + w])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "padding": [list(p) for p in self.padding],
            **self._format_config(),
        }


class Rescaling(Layer):
    """y = x · scale + offset (e.g. ``Rescaling(1 / 255)`` to bring pixels to [0, 1]), any input shape."""

    def __init__(self, scale: float, offset: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, v in (("scale", scale), ("offset", offset)):
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float, np.floating, np.integer))
                or not np.isfinite(v)
            ):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        self.scale, self.offset = float(scale), float(offset)

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        return x * self.scale + self.offset

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        return dy * self.scale

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}
