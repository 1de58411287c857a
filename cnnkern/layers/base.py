"""The base of every layer: :class:`Layer`, the :class:`Context` a model gives its layers, and the helpers
the layer modules share (argument checks, shapes in Keras's order, arrays back to NumPy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import DTypeLike

from .._typing import BackendArray, Shape

if TYPE_CHECKING:
    from ..backends.base import Backend


class Context:
    """What layers need from their model: the backend, its array module, the dtype, the random generator."""

    def __init__(self, backend: Backend, dtype: DTypeLike, rng: np.random.Generator) -> None:
        self.backend = backend
        self.xp: Any = __import__(backend.array_module)  # the array module: numpy, or cupy for cuda
        self.dtype = np.dtype(dtype)
        self.rng = rng

    def asarray(self, a: Any) -> BackendArray:
        """``a`` (NumPy) as an array of the model's dtype on its backend."""
        return self.xp.asarray(np.asarray(a, dtype=self.dtype))


def _pair(name: str, v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2 or not all(isinstance(i, (int, np.integer)) and i >= 1 for i in v):
            raise ValueError(f"{name} must be a positive int or a pair of them, got {v!r}")
        return (int(v[0]), int(v[1]))
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive int or a pair of them, got {v!r}")
    return (int(v), int(v))


def _padding(v: str) -> str:
    if v not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {v!r}")
    return v


def keras_shape(shape: Shape) -> tuple[int | None, ...]:
    """An internal per-sample shape, (C, H, W) or (F,), in Keras's order with the batch: (None, H, W, C)."""
    if len(shape) == 3:
        c, h, w = shape
        return (None, h, w, c)
    return (None, *shape)


class Layer:
    """Base layer: a name, an optional Keras ``input_shape`` (H, W, C) or (F,), parameters and gradients.

    ``params`` (trained) and ``state`` (saved but not trained, e.g. batch norm's running statistics) map
    names to arrays on the backend; ``grads`` holds the gradients of the last ``backward``.
    """

    def __init__(
        self, *, name: str | None = None, input_shape: Shape | list[int] | None = None, trainable: bool = True
    ) -> None:
        self.name = name
        self.trainable = trainable
        self.input_shape: Shape | None = None
        if input_shape is not None:
            input_shape = tuple(int(d) for d in input_shape)
            if len(input_shape) not in (1, 3) or min(input_shape) < 1:
                raise ValueError(
                    f"input_shape must be (H, W, C) or (features,) without the batch, got {input_shape}"
                )
            self.input_shape = input_shape
        self.params: dict[str, BackendArray] = {}
        self.state: dict[str, BackendArray] = {}
        self.grads: dict[str, BackendArray] = {}
        self.built = False
        self.output_shape: Shape | None = None
        # None until build() or to_context(); forward and backward only run after one of them
        self._ctx: Context = None  # type: ignore[assignment]

    # --- building -------------------------------------------------------------------------------
    def build(self, in_shape: Shape, ctx: Context) -> Shape:
        """Create parameters for the per-sample input shape ``in_shape`` (internal layout); set
        ``output_shape``."""
        self._ctx = ctx
        self.in_shape = tuple(in_shape)
        self.output_shape = self._build(self.in_shape, ctx)
        self.built = True
        return self.output_shape

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        return in_shape

    def _require_images(self, in_shape: Shape) -> None:
        if len(in_shape) != 3:
            raise ValueError(
                f"{self.name} ({type(self).__name__}) needs image input (H, W, C), got per-sample "
                f"shape {keras_shape(in_shape)[1:]}; add a Flatten/reshape or fix input_shape"
            )

    def count_params(self) -> int:
        return sum(int(a.size) for a in self.params.values()) + sum(int(a.size) for a in self.state.values())

    def get_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"name": self.name, "trainable": self.trainable}
        if self.input_shape is not None:
            cfg["input_shape"] = list(self.input_shape)
        return cfg

    def to_context(self, ctx: Context) -> None:
        """Move parameters and state to another backend (arrays converted); saved activations are dropped."""
        self._ctx = ctx
        for d in (self.params, self.state):
            for k, a in d.items():
                d[k] = ctx.asarray(to_numpy(a))
        self.grads = {}
        self._clear()

    def _clear(self) -> None:
        """Forget what the last forward saved for backward."""

    def __call__(self, inputs: Any) -> Any:
        """Keras's functional API: called on a KerasTensor (``cnnkern.Input(...)`` or a layer's output; a list
        of them for a merge layer), returns the output KerasTensor (see :mod:`cnnkern.layers.input`)."""
        from .input import call_symbolic

        return call_symbolic(self, inputs)

    # --- running ----------------------------------------------------------------------------------
    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        """Output for input ``x``. ``logits``: the model asks the final softmax layer for its pre-softmax
        values so that the loss can use the fused softmax cross-entropy kernel."""
        raise NotImplementedError

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        """dL/dx from dL/dy (None when not ``need_dx``); parameter gradients go to ``grads``."""
        raise NotImplementedError


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)
