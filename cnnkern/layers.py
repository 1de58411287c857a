"""Keras-style layers over :mod:`cnnkern.ops`: Conv2D, MaxPooling2D, AveragePooling2D, BatchNormalization,
Dense, Flatten, Activation, ReLU, LeakyReLU, Dropout.

Argument names and defaults are Keras's. Layouts:

* The user's images are ``(N, H, W, C)`` as in Keras; :class:`cnnkern.models.Sequential` transposes them
  ONCE at the model input to the canonical ``(N, C, H, W)``, and every layer works in NCHW from there on.
  Shapes printed by ``summary()`` are given back in Keras's order, ``(None, H, W, C)``.
* :class:`Flatten` flattens NCHW activations in C, H, W order (PyTorch's order, not Keras's H, W, C). It
  only matters when weights are copied to or from another framework's Dense layer after a Flatten.
* Weights are canonical: conv ``(K, C, R, S)``, dense ``(out, in)``.

A layer is built once its input shape is known (``build``), keeps on ``forward`` exactly what its
``backward`` needs (its input for conv/dense/batch norm, its output for an activation, the argmax for max
pooling, the mask for dropout) and writes its parameter gradients to ``grads``. Arrays live on the model's
backend (NumPy, or CuPy for cuda). Layers never call a backend directly: every kernel goes through
:mod:`cnnkern.ops`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import DTypeLike

from . import initializers, ops, shapes
from ._typing import BackendArray, Shape
from .initializers import Initializer

if TYPE_CHECKING:
    from .backends.base import Backend

__all__ = [
    "Activation",
    "AveragePooling2D",
    "BatchNormalization",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "Layer",
    "LeakyReLU",
    "MaxPooling2D",
    "ReLU",
]

ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax")
_KERNEL_ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh")
KERAS_LEAKY_RELU_SLOPE = 0.2  # activation='leaky_relu' (Keras 3's default slope for the function)


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


def _activation(v: str | None) -> str:
    if v is None:
        return "linear"
    if v not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)} or None, got {v!r}")
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

    # --- running ----------------------------------------------------------------------------------
    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        """Output for input ``x``. ``logits``: the model asks the final softmax layer for its pre-softmax
        values so that the loss can use the fused softmax cross-entropy kernel."""
        raise NotImplementedError

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        """dL/dx from dL/dy (None when not ``need_dx``); parameter gradients go to ``grads``."""
        raise NotImplementedError


class ActivationSource(Protocol):
    """A layer whose activation gradient a max pool after it can apply (see :meth:`MaxPooling2D.backward`)."""

    def take_activation(self) -> tuple[BackendArray, str, float] | None: ...


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


class _ActivationMixin:
    """The activation applied after a layer's linear part; keeps the activation's output for backward."""

    # provided by the Layer the mixin is combined with
    name: str | None
    _ctx: Context

    def _set_activation(self, activation: str | None) -> None:
        self.activation = _activation(activation)
        self.alpha = KERAS_LEAKY_RELU_SLOPE  # used by 'leaky_relu' only; LeakyReLU sets its own
        self._out: BackendArray | None = None
        self._passthrough = False
        self._act_taken = False  # the next layer's backward already applied this activation's gradient

    def _act_forward(self, z: BackendArray, training: bool, logits: bool) -> BackendArray:
        kind = self.activation
        # linear, or softmax left to the fused softmax cross-entropy: backward gets dL/dz directly
        passthrough = kind == "linear" or (kind == "softmax" and logits)
        if passthrough:
            out = z
        elif kind == "softmax":
            xp = self._ctx.xp
            e = xp.exp(z - z.max(axis=1, keepdims=True))  # stable: the largest exponent is exp(0)
            out = e / e.sum(axis=1, keepdims=True)
        else:
            out = ops.activation_forward(z, kind, alpha=self.alpha, backend=self._ctx.backend)
        if training:
            self._passthrough = passthrough
            self._act_taken = False
            self._out = None if passthrough else out
        return out

    def _fused_kind(self) -> str | None:
        """The activation a fused ``*_bias_act_forward`` kernel applies for this layer (None for linear, or
        for softmax, which stays outside the kernels)."""
        return self.activation if self.activation in _KERNEL_ACTIVATIONS else None

    def _act_fused(self, y: BackendArray, training: bool, logits: bool) -> BackendArray:
        """Bookkeeping after a fused forward that already returned ``y = act(z)``: keep y for backward
        (activation_backward takes the output, so the pre-activation z is never needed)."""
        if self._fused_kind() is None:
            return self._act_forward(y, training, logits)
        if training:
            self._passthrough = False
            self._act_taken = False
            self._out = y
        return y

    def take_activation(self) -> tuple[BackendArray, str, float] | None:
        """For a max pool right after this layer: ``(a, kind, alpha)`` so that its backward can apply this
        activation's gradient in the same pass (ops.maxpool2d_act_backward), after which this layer's
        backward skips it; None where there is nothing to take (linear, softmax, no training forward)."""
        if self._passthrough or self._out is None or self._fused_kind() is None:
            return None
        a, self._out = self._out, None
        self._act_taken = True
        return a, self.activation, self.alpha

    def _act_backward(self, dy: BackendArray) -> BackendArray:
        if self._passthrough:
            return dy
        if self._act_taken:
            self._act_taken = False
            return dy
        if self._out is None:
            raise RuntimeError(f"{self.name}: backward called without a training forward before it")
        y, self._out = self._out, None
        if self.activation == "softmax":
            # Jacobian-vector product of softmax along axis 1: y * (dy - Σ dy·y)
            return y * (dy - (dy * y).sum(axis=1, keepdims=True))
        return ops.activation_backward(dy, y, self.activation, alpha=self.alpha, backend=self._ctx.backend)

    def _act_config(self, cfg: dict[str, Any]) -> dict[str, Any]:
        cfg["activation"] = self.activation
        return cfg


class Conv2D(_ActivationMixin, Layer):
    """2-D convolution (cross-correlation): x (N,C,H,W), kernel (filters,C,R,S), bias (filters,).

    ``padding='same'`` with strides > 1 pads like TensorFlow (output ceil(H/s)), the extra row/column at
    the end. ``data_format`` other than 'channels_last' (the layout the user feeds the model) is refused.

    When the model puts a MaxPooling2D right after it (and the activation is not softmax), the model links
    the pair (``pool_sink``): this layer's forward then returns the pooled output, computed with
    ops.conv2d_act_maxpool_forward, and the pool passes it on (and passes dy back); the model's results are
    those of the unlinked pair (to rounding where pool windows overlap: the activation's gradient is then
    applied before the pool's scatter-add instead of after).
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int] | list[int],
        strides: int | tuple[int, int] | list[int] = (1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: int | tuple[int, int] | list[int] = (1, 1),
        groups: int = 1,
        activation: str | None = None,
        use_bias: bool = True,
        kernel_initializer: str | Initializer = "glorot_uniform",
        bias_initializer: str | Initializer = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"filters must be a positive int, got {filters!r}")
        if data_format not in (None, "channels_last"):
            raise ValueError(
                f"data_format must be 'channels_last' (images are fed as (N, H, W, C)), got {data_format!r}"
            )
        if not isinstance(groups, (int, np.integer)) or groups < 1 or filters % groups:
            raise ValueError(f"groups must be a positive int dividing filters={filters}, got {groups!r}")
        self.filters = int(filters)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        self.padding = _padding(padding)
        self.dilation_rate = _pair("dilation_rate", dilation_rate)
        self.groups = int(groups)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self._set_activation(activation)
        self._x: BackendArray | None = None
        # (y, argmax) of a fused forward with the linked pool, for backward
        self._pooled: tuple[BackendArray, BackendArray] | None = None

    def can_fuse_pool(self) -> bool:
        """Whether a max pool after this layer can run fused with it (not after softmax, which normalises
        over the channels before pooling)."""
        return self.activation == "linear" or self._fused_kind() is not None

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        self._require_images(in_shape)
        c, h, w = in_shape
        if c % self.groups:
            raise ValueError(f"{self.name}: groups={self.groups} must divide the {c} input channels")
        r, s = self.kernel_size
        cg = c // self.groups
        self.params["kernel"] = ctx.asarray(
            self.kernel_initializer(
                (self.filters, cg, r, s), cg * r * s, self.filters // self.groups * r * s, ctx.rng
            )
        )
        if self.use_bias:
            self.params["bias"] = ctx.asarray(
                self.bias_initializer((self.filters,), cg * r * s, self.filters, ctx.rng)
            )
        out = []
        for length, k, st, d in zip((h, w), self.kernel_size, self.strides, self.dilation_rate):
            lo, hi = shapes.same_padding(length, k, st, d) if self.padding == "same" else (0, 0)
            out.append(shapes.conv_out(length, k, st, lo, hi, d))
        if min(out) < 1:
            raise ValueError(
                f"{self.name}: a {r}x{s} kernel does not fit the {h}x{w} input with padding={self.padding!r}"
            )
        return (self.filters, out[0], out[1])

    # The MaxPooling2D right after this layer, linked by the model (Sequential.build): forward then runs conv,
    # activation and pool as one kernel (ops.conv2d_act_maxpool_forward) and hands the pooled output to that
    # layer, whose forward passes it on and whose backward passes dy back here.
    pool_sink: MaxPooling2D | None = None

    def _conv_args(self, activation: bool = True) -> dict[str, Any]:
        """The keywords every conv kernel call of this layer takes (with the activation's, for the fused
        kernels that apply it)."""
        args: dict[str, Any] = dict(
            stride=self.strides,
            padding=self.padding,
            dilation=self.dilation_rate,
            groups=self.groups,
            backend=self._ctx.backend,
        )
        if activation:
            args.update(activation=self._fused_kind(), alpha=self.alpha)
        return args

    def _forward_pooled(self, x: BackendArray, training: bool, pool: MaxPooling2D) -> BackendArray:
        out = ops.conv2d_act_maxpool_forward(
            x,
            self.params["kernel"],
            self.params.get("bias"),
            **self._conv_args(),
            **pool.fused_geometry(),
            return_argmax=training,
        )
        y = out[0] if training else out
        if training:
            self._x, self._pooled = x, out
            self._out, self._passthrough, self._act_taken = None, False, False
        pool.accept_pooled(y)
        return y

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        if self.pool_sink is not None:
            return self._forward_pooled(x, training, self.pool_sink)
        # conv + bias + activation in one kernel (the backend's fused epilogue where it has one)
        y = ops.conv2d_bias_act_forward(
            x, self.params["kernel"], self.params.get("bias"), **self._conv_args()
        )
        if training:
            self._x = x
        return self._act_fused(y, training, logits)

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        if self._pooled is not None:  # dy is the gradient of the linked pool's output
            (y, argmax), self._pooled = self._pooled, None
            x, self._x = self._x, None
            dx, dw, db = ops.conv2d_act_maxpool_backward(
                dy,
                y,
                argmax,
                x,
                self.params["kernel"],
                **self._conv_args(),
                need_dx=need_dx,
                need_dw=True,
                need_db=self.use_bias,
            )
            return self._keep_grads(dx, dw, db)
        dz = self._act_backward(dy)
        x, self._x = self._x, None
        dx, dw, db = ops.conv2d_backward(
            dz,
            x,
            self.params["kernel"],
            **self._conv_args(activation=False),
            need_dx=need_dx,
            need_dw=True,
            need_db=self.use_bias,
        )
        return self._keep_grads(dx, dw, db)

    def _keep_grads(self, dx: BackendArray, dw: BackendArray, db: BackendArray) -> BackendArray:
        self.grads["kernel"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        return dx

    def _clear(self) -> None:
        self._x = self._out = self._pooled = None

    def get_config(self) -> dict[str, Any]:
        return self._act_config(
            {
                **super().get_config(),
                "filters": self.filters,
                "kernel_size": list(self.kernel_size),
                "strides": list(self.strides),
                "padding": self.padding,
                "dilation_rate": list(self.dilation_rate),
                "groups": self.groups,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.name_of(self.kernel_initializer),
                "bias_initializer": initializers.name_of(self.bias_initializer),
            }
        )


class _Pooling2D(Layer):
    """Shared geometry of the pooling layers. ``padding='same'`` follows TensorFlow: output ceil(H/s), the
    window grid padded by (lo, hi) with hi - lo in {0, 1}; that is pool padding ``lo`` on both sides plus
    ceil_mode for the one extra at the end (whose overhang max pooling ignores and average pooling does not
    count). A 'same' geometry that this cannot express (lo > pool_size // 2) is refused at build."""

    def __init__(
        self,
        pool_size: int | tuple[int, int] | list[int] = (2, 2),
        strides: int | tuple[int, int] | list[int] | None = None,
        padding: str = "valid",
        data_format: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"data_format must be 'channels_last', got {data_format!r}")
        self.pool_size = _pair("pool_size", pool_size)
        self.strides = self.pool_size if strides is None else _pair("strides", strides)
        self.padding = _padding(padding)

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        self._require_images(in_shape)
        c, h, w = in_shape
        pad: list[int] = []
        ceil = False
        out: list[int] = []
        for length, k, s in zip((h, w), self.pool_size, self.strides):
            if self.padding == "valid":
                pad.append(0)
                continue
            lo, hi = shapes.same_padding(length, k, s, 1)
            if lo > k // 2 or hi - lo not in (0, 1):
                raise ValueError(
                    f"{self.name}: padding='same' for pool_size {self.pool_size}, strides "
                    f"{self.strides} on a {h}x{w} input needs padding {lo}/{hi}, which pooling "
                    f"cannot express"
                )
            pad.append(lo)
            ceil = ceil or hi > lo
        self._geom: dict[str, Any] = {
            "kernel_size": self.pool_size,
            "stride": self.strides,
            "padding": tuple(pad),
            "ceil_mode": ceil,
        }
        for length, k, s, p in zip((h, w), self.pool_size, self.strides, pad):
            out.append(shapes.pool_out(length, k, s, p, 1, ceil))
            if self.padding == "same" and out[-1] != -(-length // s):
                raise ValueError(
                    f"{self.name}: padding='same' cannot be expressed for pool_size "
                    f"{self.pool_size}, strides {self.strides} on a {h}x{w} input"
                )
        if min(out) < 1:
            raise ValueError(f"{self.name}: pool_size {self.pool_size} does not fit the {h}x{w} input")
        return (c, out[0], out[1])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
            "padding": self.padding,
        }


class MaxPooling2D(_Pooling2D):
    """Max pooling (window ``pool_size``, default stride = pool_size); keeps the argmax for backward.

    When the model puts it right after a Conv2D, the two run as one kernel pair (``conv_source``, see
    Conv2D). Right after another layer with an activation (ReLU, Dense...), the model links that layer as
    ``act_source`` and backward returns the gradient before the activation (ops.maxpool2d_act_backward: pool
    scatter and activation gradient in one pass); the source then skips its own activation gradient.
    """

    act_source: ActivationSource | None = None
    # a Conv2D right before, linked by the model to run with this pool as one kernel
    conv_source: Conv2D | None = None
    # the output that conv_source computed for this layer, until forward passes it on
    _prepooled: BackendArray | None = None
    _fused = False  # the last training forward was conv_source's: backward passes dy back to it

    def fused_geometry(self) -> dict[str, Any]:
        """This pool's arguments to ops.conv2d_act_maxpool_forward."""
        g = self._geom
        return dict(
            pool_size=g["kernel_size"],
            pool_stride=g["stride"],
            pool_padding=g["padding"],
            ceil_mode=g["ceil_mode"],
        )

    def accept_pooled(self, y: BackendArray) -> None:
        """Called by conv_source's fused forward with this layer's output."""
        self._prepooled = y
        self._fused = False

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        if self._prepooled is not None and x is self._prepooled:  # conv_source already pooled it
            self._prepooled = None
            self._fused = training
            return x
        self._prepooled, self._fused = None, False
        if not training:  # no argmax needed: the kernel skips writing it
            return ops.maxpool2d_forward(x, **self._geom, return_argmax=False, backend=self._ctx.backend)
        y, self._argmax = ops.maxpool2d_forward(x, **self._geom, backend=self._ctx.backend)
        self._x_shape = x.shape
        return y

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        if self._fused:  # conv_source's backward applies this pool's (and its activation's) gradient
            self._fused = False
            return dy
        argmax, self._argmax = self._argmax, None
        if argmax is None:
            raise RuntimeError(f"{self.name}: backward called without a training forward before it")
        taken = self.act_source.take_activation() if self.act_source is not None else None
        if taken is not None:
            a, kind, alpha = taken
            return ops.maxpool2d_act_backward(dy, argmax, a, kind, alpha=alpha, backend=self._ctx.backend)
        return ops.maxpool2d_backward(dy, argmax, self._x_shape, backend=self._ctx.backend)

    def _clear(self) -> None:
        self._argmax = self._prepooled = None
        self._fused = False


class AveragePooling2D(_Pooling2D):
    """Average pooling; with padding='same' the divisor counts only real elements (as Keras)."""

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        out = super()._build(in_shape, ctx)
        self._geom["count_include_pad"] = False
        return out

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        if training:
            self._x_shape = x.shape
        return ops.avgpool2d_forward(x, **self._geom, backend=self._ctx.backend)

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        return ops.avgpool2d_backward(dy, self._x_shape, **self._geom, backend=self._ctx.backend)


class BatchNormalization(Layer):
    """Batch normalisation over the channel axis (images) or the feature axis (flat input).

    ``convention='torch'`` (default): momentum 0.1 weighting the NEW batch statistic, eps 1e-5, running
    variance unbiased (PyTorch's BatchNorm2d). ``convention='keras'``: Keras's meaning and defaults,
    momentum 0.99 weighting the OLD running value, epsilon 1e-3, running variance biased. ``momentum`` and
    ``epsilon`` override the convention's defaults and are read in that convention's sense.
    """

    def __init__(
        self,
        axis: int = -1,
        momentum: float | None = None,
        epsilon: float | None = None,
        center: bool = True,
        scale: bool = True,
        convention: str = "torch",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if axis != -1:
            raise ValueError(f"axis must be -1 (the channel axis of (N, H, W, C) input), got {axis!r}")
        if convention not in ("torch", "keras"):
            raise ValueError(f"convention must be 'torch' or 'keras', got {convention!r}")
        self.convention = convention
        keras = convention == "keras"
        self.momentum = float((0.99 if keras else 0.1) if momentum is None else momentum)
        self.epsilon = float((1e-3 if keras else 1e-5) if epsilon is None else epsilon)
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {self.momentum}")
        if not self.epsilon > 0.0:
            raise ValueError(f"epsilon must be > 0, got {self.epsilon}")
        self.center = bool(center)
        self.scale = bool(scale)
        self._x = None

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        c = in_shape[0]
        if self.scale:
            self.params["gamma"] = ctx.asarray(np.ones(c))
        if self.center:
            self.params["beta"] = ctx.asarray(np.zeros(c))
        self.state["moving_mean"] = ctx.asarray(np.zeros(c))
        self.state["moving_variance"] = ctx.asarray(np.ones(c))
        return in_shape

    def _as4d(self, a: BackendArray) -> BackendArray:
        return a if a.ndim == 4 else a.reshape(a.shape[0], a.shape[1], 1, 1)

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        x4 = self._as4d(x)
        new_weight = 1.0 - self.momentum if self.convention == "keras" else self.momentum
        rv = self.state["moving_variance"]
        y, mean, invstd = ops.batchnorm2d_forward(
            x4,
            self.params.get("gamma"),
            self.params.get("beta"),
            self.state["moving_mean"],
            rv,
            training=training,
            momentum=new_weight,
            eps=self.epsilon,
            backend=self._ctx.backend,
        )
        if training:
            if self.convention == "keras":
                # the kernel blended in the unbiased variance var·n/(n−1); Keras blends the biased var, which
                # is smaller by var/(n−1), with var = 1/invstd² − eps
                n = x4.shape[0] * x4.shape[2] * x4.shape[3]
                rv -= new_weight * (1.0 / (invstd * invstd) - self.epsilon) / (n - 1)
            self._x, self._mean, self._invstd = x4, mean, invstd
        return y.reshape(x.shape)

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        x4, self._x = self._x, None
        dx, dgamma, dbeta = ops.batchnorm2d_backward(
            self._as4d(dy),
            x4,
            self.params.get("gamma"),
            self._mean,
            self._invstd,
            training=True,
            backend=self._ctx.backend,
        )
        if self.scale:
            self.grads["gamma"] = dgamma
        if self.center:
            self.grads["beta"] = dbeta
        return dx.reshape(dy.shape) if need_dx else None

    def _clear(self) -> None:
        self._x = None

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "convention": self.convention,
        }


class Dense(_ActivationMixin, Layer):
    """Fully connected: x (N, in) -> x·kernelᵀ + bias (N, units); kernel stored (units, in) like PyTorch."""

    def __init__(
        self,
        units: int,
        activation: str | None = None,
        use_bias: bool = True,
        kernel_initializer: str | Initializer = "glorot_uniform",
        bias_initializer: str | Initializer = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"units must be a positive int, got {units!r}")
        self.units = int(units)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self._set_activation(activation)
        self._x = None

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        if len(in_shape) != 1:
            raise ValueError(
                f"{self.name} (Dense) needs flat input (features,), got per-sample shape "
                f"{keras_shape(in_shape)[1:]}; add a Flatten layer before it"
            )
        n_in = in_shape[0]
        self.params["kernel"] = ctx.asarray(
            self.kernel_initializer((self.units, n_in), n_in, self.units, ctx.rng)
        )
        if self.use_bias:
            self.params["bias"] = ctx.asarray(self.bias_initializer((self.units,), n_in, self.units, ctx.rng))
        return (self.units,)

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        y = ops.dense_bias_act_forward(
            x,
            self.params["kernel"],
            self.params.get("bias"),
            activation=self._fused_kind(),
            alpha=self.alpha,
            backend=self._ctx.backend,
        )
        if training:
            self._x = x
        return self._act_fused(y, training, logits)

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        dz = self._act_backward(dy)
        x, self._x = self._x, None
        dx, dw, db = ops.dense_backward(
            dz, x, self.params["kernel"], need_dx=need_dx, need_db=self.use_bias, backend=self._ctx.backend
        )
        self.grads["kernel"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        return dx

    def _clear(self) -> None:
        self._x = self._out = None

    def get_config(self) -> dict[str, Any]:
        return self._act_config(
            {
                **super().get_config(),
                "units": self.units,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.name_of(self.kernel_initializer),
                "bias_initializer": initializers.name_of(self.bias_initializer),
            }
        )


class Flatten(Layer):
    """(N, C, H, W) -> (N, C·H·W) in C, H, W order (a view: no copy); backward reshapes back."""

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        return (int(np.prod(in_shape)),)

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        return dy.reshape((dy.shape[0], *self.in_shape))


class Activation(_ActivationMixin, Layer):
    """An activation as a layer: 'relu', 'leaky_relu', 'sigmoid', 'tanh', 'softmax' (over the features of
    flat input) or 'linear'."""

    def __init__(self, activation: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._set_activation(activation)

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        if self.activation == "softmax" and len(in_shape) != 1:
            raise ValueError(
                f"{self.name}: softmax needs flat input (features,), got {keras_shape(in_shape)[1:]}"
            )
        return in_shape

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        return self._act_forward(x, training, logits)

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        return self._act_backward(dy)

    def _clear(self) -> None:
        self._out = None

    def get_config(self) -> dict[str, Any]:
        return self._act_config(super().get_config())


class ReLU(Activation):
    """max(x, 0)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("relu", **kwargs)

    def get_config(self) -> dict[str, Any]:
        return Layer.get_config(self)


class LeakyReLU(Activation):
    """x for x > 0, negative_slope·x below (Keras 3's name and default 0.3; Keras 2's ``alpha`` accepted)."""

    def __init__(self, negative_slope: float = 0.3, alpha: float | None = None, **kwargs: Any) -> None:
        super().__init__("leaky_relu", **kwargs)
        slope = negative_slope if alpha is None else alpha
        if not isinstance(slope, (int, float)) or isinstance(slope, bool) or slope < 0:
            raise ValueError(f"negative_slope must be a number >= 0, got {slope!r}")
        self.alpha = float(slope)

    def get_config(self) -> dict[str, Any]:
        return {**Layer.get_config(self), "negative_slope": self.alpha}


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


LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (
        Conv2D,
        MaxPooling2D,
        AveragePooling2D,
        BatchNormalization,
        Dense,
        Flatten,
        Activation,
        ReLU,
        LeakyReLU,
        Dropout,
    )
}


def from_config(class_name: str, config: dict[str, Any]) -> Layer:
    """Rebuild a layer from ``get_config()`` output (used by :func:`cnnkern.models.load_model`)."""
    if class_name not in LAYERS:
        raise ValueError(f"unknown layer class {class_name!r} (known: {', '.join(LAYERS)})")
    return LAYERS[class_name](**config)
