"""Activations: the activation a layer applies after its linear part (:class:`_ActivationMixin`, used by
Conv2D and Dense) and the Activation, ReLU and LeakyReLU layers."""

from __future__ import annotations

from typing import Any, Protocol

from .. import ops
from .._typing import BackendArray, Shape
from ..kernels import ELEMENTWISE_ACTIVATIONS
from .base import Context, Layer, keras_shape

# the table's elementwise activation pairs (kernels.ELEMENTWISE_ACTIVATIONS, e.g. elu) run unfused, through
# ops.<a>_forward / ops.<a>_backward with their front-door settings, the gradient from the input
ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax") + ELEMENTWISE_ACTIVATIONS
_KERNEL_ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh")
KERAS_LEAKY_RELU_SLOPE = 0.2  # activation='leaky_relu' (Keras 3's default slope for the function)


def _activation(v: str | None) -> str:
    if v is None:
        return "linear"
    if v not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)} or None, got {v!r}")
    return v


class ActivationSource(Protocol):
    """A layer whose activation gradient a max pool after it can apply (see :meth:`MaxPooling2D.backward`)."""

    def take_activation(self) -> tuple[BackendArray, str, float] | None: ...


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
        elif kind in ELEMENTWISE_ACTIVATIONS:
            out = getattr(ops, f"{kind}_forward")(z, backend=self._ctx.backend)
        else:
            out = ops.activation_forward(z, kind, alpha=self.alpha, backend=self._ctx.backend)
        if training:
            self._passthrough = passthrough
            self._act_taken = False
            # what backward needs: the input for the table's pairs, else the output
            self._out = None if passthrough else z if kind in ELEMENTWISE_ACTIVATIONS else out
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
        if self.activation in ELEMENTWISE_ACTIVATIONS:  # y is the input here
            return getattr(ops, f"{self.activation}_backward")(dy, y, backend=self._ctx.backend)
        if self.activation == "softmax":
            # Jacobian-vector product of softmax along axis 1: y * (dy - Σ dy·y)
            return y * (dy - (dy * y).sum(axis=1, keepdims=True))
        return ops.activation_backward(dy, y, self.activation, alpha=self.alpha, backend=self._ctx.backend)

    def _act_config(self, cfg: dict[str, Any]) -> dict[str, Any]:
        cfg["activation"] = self.activation
        return cfg


class Activation(_ActivationMixin, Layer):
    """An activation as a layer: 'relu', 'leaky_relu', 'sigmoid', 'tanh', 'softmax' (over the features of
    flat input), 'linear', or one of the table's elementwise activations (kernels.ELEMENTWISE_ACTIVATIONS)."""

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
