"""Merge layers, called on a list of tensors: :class:`Add` and :class:`Concatenate`.

Both are plain array-module arithmetic on the backend's arrays (NumPy, or CuPy for cuda), not kernels of
:mod:`cnnkern.ops`: an elementwise sum and a copy into one array along the channel axis are memory-bound
single passes that NumPy / CuPy already do in one call, so a kernel of each backend would add code without
speed. Their backward passes are as simple: Add hands dy to every input, Concatenate slices it.
"""

from __future__ import annotations

from typing import Any

from .._typing import BackendArray, Shape
from .base import Context, Layer, keras_shape


class _Merge(Layer):
    """Shared checks: two or more inputs."""

    merges = True  # called on a list of tensors (cnnkern.layers.input.is_merge)

    def _inputs(self, in_shape: Any) -> list[Shape]:
        shapes = [tuple(s) for s in in_shape]
        if len(shapes) < 2:
            raise ValueError(
                f"{self.name} ({type(self).__name__}) needs two or more inputs, got {len(shapes)}"
            )
        return shapes

    def _keras(self, shapes: list[Shape]) -> str:
        return ", ".join(str(keras_shape(s)) for s in shapes)


class Add(_Merge):
    """The elementwise sum of its inputs, which must all have the same shape (no broadcasting)."""

    def _build(self, in_shape: Any, ctx: Context) -> Shape:
        shapes = self._inputs(in_shape)
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"{self.name} (Add): inputs must have the same shape, got {self._keras(shapes)}")
        self._n = len(shapes)
        return shapes[0]

    def forward(self, x: Any, training: bool = False, logits: bool = False) -> BackendArray:
        y = x[0] + x[1]  # a new array: the in-place sums below never touch an input
        for a in x[2:]:
            y += a
        return y

    def backward(self, dy: BackendArray, need_dx: bool = True) -> Any:
        # the same array for every input: layers never write into the dy they are given
        return [dy] * self._n


class Concatenate(_Merge):
    """Its inputs joined along the channel axis: Keras's ``axis=-1`` (or 3) on (H, W, C) images, -1 (or 1)
    on flat (features,) input. Other axes are refused: only channels are concatenated."""

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"axis must be an int, got {axis!r}")
        self.axis = axis

    def _build(self, in_shape: Any, ctx: Context) -> Shape:
        shapes = self._inputs(in_shape)
        rank = len(shapes[0])
        if self.axis not in (-1, rank):
            raise ValueError(
                f"{self.name} (Concatenate): only the channel axis is supported, axis=-1 (or {rank} for "
                f"{'(H, W, C)' if rank == 3 else '(features,)'} input), got axis={self.axis}"
            )
        if any(len(s) != rank or s[1:] != shapes[0][1:] for s in shapes):
            raise ValueError(
                f"{self.name} (Concatenate): inputs must agree on every axis but the channels, got "
                f"{self._keras(shapes)}"
            )
        self._sizes = [s[0] for s in shapes]  # channels (C of (C, H, W)) or features
        return (sum(self._sizes), *shapes[0][1:])

    def forward(self, x: Any, training: bool = False, logits: bool = False) -> BackendArray:
        return self._ctx.xp.concatenate(x, axis=1)  # axis 1 of (N, C, H, W) / (N, F): the channels

    def backward(self, dy: BackendArray, need_dx: bool = True) -> Any:
        xp, out, lo = self._ctx.xp, [], 0
        for n in self._sizes:
            out.append(xp.ascontiguousarray(dy[:, lo : lo + n]))  # kernels take C-contiguous arrays
            lo += n
        return out

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}
