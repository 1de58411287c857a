"""The base of every layer: :class:`Layer`, the :class:`Context` a model gives its layers, and the helpers
the layer modules share (argument checks, shapes in Keras's order, arrays back to NumPy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import DTypeLike

from .._typing import BackendArray, Shape

if TYPE_CHECKING:
    from ..backends.base import Backend


# How many times weights or running statistics may have changed in place (optimizer updates, batch norm's
# training forward, set_weights / assign): the inference plan's prepared weights (cnnkern.plan_infer) are
# rebuilt when it moved. One counter for every model: a step of any model invalidates them all, which costs
# one re-preparation and never leaves a stale one.
_weights_epoch = 0


def weights_changed() -> None:
    """Tell the inference plans that some model's weights or running statistics changed (the library calls it
    wherever it writes them; code that writes into a layer's arrays in place itself must call it too)."""
    global _weights_epoch
    _weights_epoch += 1


def weights_epoch() -> int:
    """The counter :func:`weights_changed` moves."""
    return _weights_epoch


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


def _data_format(v: str | None) -> str:
    if v in (None, "channels_last"):
        return "channels_last"
    if v != "channels_first":
        raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got {v!r}")
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

    # 'channels_first' (layers that accept it, see ChannelsFirstMixin): the layer sees its images in the
    # other order; in_shape is then in the layer's own view, output_shape in the model's internal one
    data_format = "channels_last"

    # --- building -------------------------------------------------------------------------------
    def build(self, in_shape: Shape, ctx: Context) -> Shape:
        """Create parameters for the per-sample input shape ``in_shape`` (internal layout); set
        ``output_shape``."""
        self._ctx = ctx
        cf = self.data_format == "channels_first" and len(in_shape) == 3
        self.in_shape = (in_shape[1], in_shape[2], in_shape[0]) if cf else tuple(in_shape)
        out = self._build(self.in_shape, ctx)
        self.output_shape = (out[2], out[0], out[1]) if cf and len(out) == 3 else out
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

    # --- weights, as Keras shows them ----------------------------------------------------------------
    @property
    def weights(self) -> list[Variable]:
        """Every weight (parameters, then state such as batch norm's running statistics) as a Variable."""
        return (
            self.trainable_weights + self.non_trainable_weights
            if self.trainable
            else self.non_trainable_weights
        )

    @property
    def trainable_weights(self) -> list[Variable]:
        return [Variable(self, self.params, k) for k in self.params] if self.trainable else []

    @property
    def non_trainable_weights(self) -> list[Variable]:
        frozen = [] if self.trainable else [Variable(self, self.params, k) for k in self.params]
        return frozen + [Variable(self, self.state, k) for k in self.state]

    def get_weights(self) -> list[np.ndarray]:
        """The weights as NumPy copies, in the order of :attr:`weights` (empty before the layer is built)."""
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Replace the weights (copies of ``weights``, in the order of :attr:`weights`, the same shapes)."""
        mine = self.weights
        if len(weights) != len(mine):
            raise ValueError(
                f"{self.name}: set_weights needs {len(mine)} arrays "
                f"({', '.join(v.name for v in mine) or 'the layer has no weights or is not built'}), "
                f"got {len(weights)}"
            )
        arrays = [np.array(to_numpy(w)) for w in weights]
        for v, a in zip(mine, arrays):
            if a.shape != v.shape:
                raise ValueError(f"{self.name}: weight {v.name} must have shape {v.shape}, got {a.shape}")
        for v, a in zip(mine, arrays):
            v.assign(a)

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
        weights_changed()
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


class ChannelsFirstMixin:
    """``data_format='channels_first'`` for an image layer, with Keras's meaning: the layer reads the axes
    of the tensor it is given, as Keras shows it ((N, H, W, C) for a model fed channels-last images), as
    (N, C, H, W). The model's internal layout is (N, C, H, W) for Keras's (N, H, W, C), so that view is the
    internal array transposed by (0, 2, 3, 1), and the layer's output goes back by (0, 3, 1, 2): both are
    views, and between two channels_first layers they cancel (no copy). A channels_first layer is never
    fused with its neighbours. The layer implements ``_forward`` / ``_backward`` in NCHW."""

    data_format: str

    def _forward(self, x: BackendArray, training: bool, logits: bool) -> BackendArray:
        raise NotImplementedError

    def _backward(self, dy: BackendArray, need_dx: bool) -> BackendArray | None:
        raise NotImplementedError

    def _format_config(self) -> dict[str, Any]:
        """``data_format`` for get_config, only where it is not the default (configs stay as before)."""
        return {"data_format": self.data_format} if self.data_format == "channels_first" else {}

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        if self.data_format == "channels_first" and x.ndim == 4:
            return self._forward(x.transpose(0, 2, 3, 1), training, logits).transpose(0, 3, 1, 2)
        return self._forward(x, training, logits)

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        if self.data_format == "channels_first" and dy.ndim == 4:
            dx = self._backward(dy.transpose(0, 2, 3, 1), need_dx)
            return None if dx is None else dx.transpose(0, 3, 1, 2)
        return self._backward(dy, need_dx)


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


class Variable:
    """One weight of a layer as Keras shows it (``layer.weights``, ``model.weights``): ``name``, ``path``
    ('layer/name'), ``shape``, ``dtype``, ``trainable``, ``numpy()`` (a copy) and ``assign(value)``. It
    refers to the layer's array, so it sees later updates."""

    def __init__(self, layer: Layer, store: dict[str, BackendArray], key: str) -> None:
        self._layer, self._store, self.name = layer, store, key
        self.trainable = store is layer.params and layer.trainable

    @property
    def path(self) -> str:
        return f"{self._layer.name}/{self.name}"

    @property
    def value(self) -> BackendArray:
        """The array itself, on the model's backend."""
        return self._store[self.name]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.value.shape)

    @property
    def dtype(self) -> str:
        return str(np.dtype(self.value.dtype).name)

    def numpy(self) -> np.ndarray:
        return to_numpy(self.value).copy()

    def assign(self, value: Any) -> None:
        """Replace the value by a copy of ``value`` (same shape), cast to the model's dtype."""
        a = np.array(to_numpy(value))
        if a.shape != self.shape:
            raise ValueError(f"{self.path} must have shape {self.shape}, got {a.shape}")
        self._store[self.name] = self._layer._ctx.asarray(a)
        weights_changed()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self.numpy() if dtype is None else self.numpy().astype(dtype)

    def __repr__(self) -> str:
        return f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}>"
