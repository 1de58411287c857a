"""Convolution layers: :class:`Conv2D`, :class:`DepthwiseConv2D`, :class:`SeparableConv2D`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import initializers, ops, shapes
from .._typing import BackendArray, Shape
from ..initializers import Initializer
from .activation import _ActivationMixin
from .base import ChannelsFirstMixin, Context, Layer, _data_format, _padding, _pair

if TYPE_CHECKING:
    from .pool import MaxPooling2D


def _spatial_out(layer: Conv2D | SeparableConv2D, h: int, w: int) -> tuple[int, int]:
    """The output height and width of ``layer``'s convolution on an h x w input."""
    out = []
    for length, k, st, d in zip((h, w), layer.kernel_size, layer.strides, layer.dilation_rate):
        lo, hi = shapes.same_padding(length, k, st, d) if layer.padding == "same" else (0, 0)
        out.append(shapes.conv_out(length, k, st, lo, hi, d))
    if min(out) < 1:
        r, s = layer.kernel_size
        raise ValueError(
            f"{layer.name}: a {r}x{s} kernel does not fit the {h}x{w} input with padding={layer.padding!r}"
        )
    return out[0], out[1]


def _geometry_config(layer: Conv2D | SeparableConv2D) -> dict[str, Any]:
    """The convolution's shape arguments in Keras's config form."""
    return {
        "filters": layer.filters,
        "kernel_size": list(layer.kernel_size),
        "strides": list(layer.strides),
        "padding": layer.padding,
        "dilation_rate": list(layer.dilation_rate),
    }


def _depth_multiplier(v: Any) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"depth_multiplier must be a positive int, got {v!r}")
    return int(v)


class Conv2D(ChannelsFirstMixin, _ActivationMixin, Layer):
    """2-D convolution (cross-correlation): x (N,C,H,W), kernel (filters,C,R,S), bias (filters,).

    ``padding='same'`` with strides > 1 pads like TensorFlow (output ceil(H/s)), the extra row/column at
    the end. ``data_format='channels_first'``: see :class:`cnnkern.layers.base.ChannelsFirstMixin`.

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
        self.data_format = _data_format(data_format)
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
        if self.data_format == "channels_first":
            return False
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
        return (self.filters, *_spatial_out(self, h, w))

    _kernel_name = "kernel"  # the key of the convolution weight in params / grads (Keras's name)

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
            self.params[self._kernel_name],
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

    def _forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        # conv + bias + activation in one kernel (the backend's fused epilogue where it has one)
        y = ops.conv2d_bias_act_forward(
            x, self.params[self._kernel_name], self.params.get("bias"), **self._conv_args()
        )
        if training:
            self._x = x
        return self._act_fused(y, training, logits)

    def _backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        if self._pooled is not None:  # dy is the gradient of the fused pool's output (forward_pooled)
            (y, argmax), self._pooled = self._pooled, None
            x, self._x = self._x, None
            dx, dw, db = ops.conv2d_act_maxpool_backward(
                dy,
                y,
                argmax,
                x,
                self.params[self._kernel_name],
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
            self.params[self._kernel_name],
            **self._conv_args(activation=False),
            need_dx=need_dx,
            need_dw=True,
            need_db=self.use_bias,
        )
        return self._keep_grads(dx, dw, db)

    def _keep_grads(self, dx: BackendArray, dw: BackendArray, db: BackendArray) -> BackendArray:
        self.grads[self._kernel_name] = dw
        if self.use_bias:
            self.grads["bias"] = db
        return dx

    def _clear(self) -> None:
        self._x = self._out = self._pooled = None

    def get_config(self) -> dict[str, Any]:
        return self._act_config(
            {
                **super().get_config(),
                **_geometry_config(self),
                "groups": self.groups,
                **self._format_config(),
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.name_of(self.kernel_initializer),
                "bias_initializer": initializers.name_of(self.bias_initializer),
            }
        )


class DepthwiseConv2D(Conv2D):
    """Depthwise convolution: each input channel convolved with its own ``depth_multiplier`` filters (a
    convolution with groups = channels). Weights ``depthwise_kernel`` (C·depth_multiplier, 1, R, S) and
    ``bias`` (C·depth_multiplier,), in cnnkern's canonical layout: output channel c·depth_multiplier + m
    is Keras's ``depthwise_kernel[:, :, c, m]`` (Keras stores (R, S, C, depth_multiplier)). Initializer fans
    are Keras's: fan_in = R·S·C, fan_out = R·S·depth_multiplier. A MaxPooling2D after it runs fused with it
    as after a Conv2D."""

    _kernel_name = "depthwise_kernel"

    def __init__(
        self,
        kernel_size: int | tuple[int, int] | list[int],
        strides: int | tuple[int, int] | list[int] = (1, 1),
        padding: str = "valid",
        depth_multiplier: int = 1,
        data_format: str | None = None,
        dilation_rate: int | tuple[int, int] | list[int] = (1, 1),
        activation: str | None = None,
        use_bias: bool = True,
        depthwise_initializer: str | Initializer = "glorot_uniform",
        bias_initializer: str | Initializer = "zeros",
        **kwargs: Any,
    ) -> None:
        mult = _depth_multiplier(depth_multiplier)
        super().__init__(
            mult,  # the filters per input channel; build sets filters = channels * depth_multiplier
            kernel_size,
            strides=strides,
            padding=padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=depthwise_initializer,
            bias_initializer=bias_initializer,
            **kwargs,
        )
        self.depth_multiplier = mult
        self.depthwise_initializer = self.kernel_initializer

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        self._require_images(in_shape)
        c, h, w = in_shape
        r, s = self.kernel_size
        self.groups, self.filters = c, c * self.depth_multiplier
        m = self.depth_multiplier
        self.params["depthwise_kernel"] = ctx.asarray(
            self.depthwise_initializer((self.filters, 1, r, s), r * s * c, r * s * m, ctx.rng)
        )
        if self.use_bias:
            self.params["bias"] = ctx.asarray(self.bias_initializer((self.filters,), r * s * c, m, ctx.rng))
        return (self.filters, *_spatial_out(self, h, w))

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        for key in ("filters", "groups", "kernel_initializer"):
            del cfg[key]
        cfg["depth_multiplier"] = self.depth_multiplier
        cfg["depthwise_initializer"] = initializers.name_of(self.depthwise_initializer)
        return cfg


class SeparableConv2D(ChannelsFirstMixin, _ActivationMixin, Layer):
    """Depthwise separable convolution: a depthwise convolution (groups = channels, ``depth_multiplier``
    filters each, no bias), then a 1x1 ``pointwise`` convolution to ``filters`` channels with the bias and
    the activation. Weights (Keras's names, cnnkern's canonical layout): ``depthwise_kernel``
    (C·depth_multiplier, 1, R, S), ``pointwise_kernel`` (filters, C·depth_multiplier, 1, 1), ``bias``
    (filters,). Initializer fans are Keras's (see DepthwiseConv2D; pointwise fan_in C·depth_multiplier,
    fan_out filters)."""

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int] | list[int],
        strides: int | tuple[int, int] | list[int] = (1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: int | tuple[int, int] | list[int] = (1, 1),
        depth_multiplier: int = 1,
        activation: str | None = None,
        use_bias: bool = True,
        depthwise_initializer: str | Initializer = "glorot_uniform",
        pointwise_initializer: str | Initializer = "glorot_uniform",
        bias_initializer: str | Initializer = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(filters, (int, np.integer)) or isinstance(filters, bool) or filters < 1:
            raise ValueError(f"filters must be a positive int, got {filters!r}")
        self.data_format = _data_format(data_format)
        self.filters = int(filters)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        self.padding = _padding(padding)
        self.dilation_rate = _pair("dilation_rate", dilation_rate)
        self.depth_multiplier = _depth_multiplier(depth_multiplier)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self._set_activation(activation)
        self._x: BackendArray | None = None
        self._mid: BackendArray | None = None  # the depthwise output, the pointwise convolution's input

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        self._require_images(in_shape)
        c, h, w = in_shape
        r, s = self.kernel_size
        m, f = self.depth_multiplier, self.filters
        self.params["depthwise_kernel"] = ctx.asarray(
            self.depthwise_initializer((c * m, 1, r, s), r * s * c, r * s * m, ctx.rng)
        )
        self.params["pointwise_kernel"] = ctx.asarray(
            self.pointwise_initializer((f, c * m, 1, 1), c * m, f, ctx.rng)
        )
        if self.use_bias:
            self.params["bias"] = ctx.asarray(self.bias_initializer((f,), c * m, f, ctx.rng))
        return (f, *_spatial_out(self, h, w))

    def _depthwise_args(self) -> dict[str, Any]:
        return dict(
            stride=self.strides,
            padding=self.padding,
            dilation=self.dilation_rate,
            groups=self.in_shape[0],
            backend=self._ctx.backend,
        )

    def _forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        mid = ops.conv2d_forward(x, self.params["depthwise_kernel"], None, **self._depthwise_args())
        y = ops.conv2d_bias_act_forward(
            mid,
            self.params["pointwise_kernel"],
            self.params.get("bias"),
            activation=self._fused_kind(),
            alpha=self.alpha,
            backend=self._ctx.backend,
        )
        if training:
            self._x, self._mid = x, mid
        return self._act_fused(y, training, logits)

    def _backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        dz = self._act_backward(dy)
        x, mid, self._x, self._mid = self._x, self._mid, None, None
        dmid, dpw, db = ops.conv2d_backward(
            dz, mid, self.params["pointwise_kernel"], need_db=self.use_bias, backend=self._ctx.backend
        )
        dx, ddw, _ = ops.conv2d_backward(
            dmid, x, self.params["depthwise_kernel"], **self._depthwise_args(), need_dx=need_dx, need_db=False
        )
        self.grads["depthwise_kernel"], self.grads["pointwise_kernel"] = ddw, dpw
        if self.use_bias:
            self.grads["bias"] = db
        return dx

    def _clear(self) -> None:
        self._x = self._mid = self._out = None

    def get_config(self) -> dict[str, Any]:
        return self._act_config(
            {
                **super().get_config(),
                **_geometry_config(self),
                "depth_multiplier": self.depth_multiplier,
                **self._format_config(),
                "use_bias": self.use_bias,
                "depthwise_initializer": initializers.name_of(self.depthwise_initializer),
                "pointwise_initializer": initializers.name_of(self.pointwise_initializer),
                "bias_initializer": initializers.name_of(self.bias_initializer),
            }
        )
