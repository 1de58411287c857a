"""Fully connected layers: :class:`Dense`."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import initializers, ops
from .._typing import BackendArray, Shape
from ..initializers import Initializer
from .activation import _ActivationMixin
from .base import Context, Layer, keras_shape


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
