"""Convolution layers: :class:`Conv2D`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import initializers, ops, shapes
from .._typing import BackendArray, Shape
from ..initializers import Initializer
from .activation import _ActivationMixin
from .base import Context, Layer, _padding, _pair

if TYPE_CHECKING:
    from .pool import MaxPooling2D


class Conv2D(_ActivationMixin, Layer):
    """2-D convolution (cross-correlation): x (N,C,H,W), kernel (filters,C,R,S), bias (filters,).

    ``padding='same'`` with strides > 1 pads like TensorFlow (output ceil(H/s)), the extra row/column at
    the end. ``data_format`` other than 'channels_last' (the layout the user feeds the model) is refused.

    When only a MaxPooling2D reads its output (and the activation is not softmax), the model's plan
    (:mod:`cnnkern.plan`) runs the pair as one step: :meth:`forward_pooled` returns the pooled output,
    computed with ops.conv2d_act_maxpool_forward, and :meth:`backward` takes the pooled output's gradient;
    the results are those of the separate pair (to rounding where pool windows overlap: the activation's
    gradient is then applied before the pool's scatter-add instead of after).
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

    def forward_pooled(self, x: BackendArray, training: bool, pool: MaxPooling2D) -> BackendArray:
        """Conv, activation and ``pool`` as one kernel: the pool's output (the plan's fused step)."""
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
        return y

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        # conv + bias + activation in one kernel (the backend's fused epilogue where it has one)
        y = ops.conv2d_bias_act_forward(
            x, self.params["kernel"], self.params.get("bias"), **self._conv_args()
        )
        if training:
            self._x = x
        return self._act_fused(y, training, logits)

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        if self._pooled is not None:  # dy is the gradient of the fused pool's output (forward_pooled)
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
