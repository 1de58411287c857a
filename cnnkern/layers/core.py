"""Layers without a kernel family of their own: :class:`Flatten` (reshaping) and :class:`Dropout`
(regularisation)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._typing import BackendArray, Shape
from .base import Context, Layer


class Flatten(Layer):
    """(N, C, H, W) -> (N, C·H·W) in C, H, W order (a view: no copy); backward reshapes back."""

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        return (int(np.prod(in_shape)),)

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))  # -1 cannot be inferred for N = 0

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

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        if not training or self.rate == 0.0:
            return x
        keep = self._ctx.rng.random(x.shape) >= self.rate
        self._mask = self._ctx.asarray(keep / (1.0 - self.rate))
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
