"""Pooling layers: :class:`MaxPooling2D`, :class:`AveragePooling2D`, :class:`GlobalAveragePooling2D`,
:class:`GlobalMaxPooling2D`."""

from __future__ import annotations

from typing import Any

from .. import ops, shapes
from .._typing import BackendArray, Shape
from .activation import ActivationSource
from .base import ChannelsFirstMixin, Context, Layer, _data_format, _padding, _pair


class _Pooling2D(ChannelsFirstMixin, Layer):
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
        self.data_format = _data_format(data_format)  # see ChannelsFirstMixin
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
            **self._format_config(),
        }


class MaxPooling2D(_Pooling2D):
    """Max pooling (window ``pool_size``, default stride = pool_size); keeps the argmax for backward.

    Where it alone reads a Conv2D's output, the model's plan runs the two as one kernel pair (see
    Conv2D.forward_pooled) and this layer is not called. Where it alone reads another layer with an
    activation (ReLU, Dense...), the plan calls :meth:`backward_through` with that layer, which returns the
    gradient before the activation (ops.maxpool2d_act_backward: pool scatter and activation gradient in one
    pass); the source then skips its own activation gradient.
    """

    _argmax: BackendArray | None = None

    def fused_geometry(self) -> dict[str, Any]:
        """This pool's arguments to ops.conv2d_act_maxpool_forward."""
        g = self._geom
        return dict(
            pool_size=g["kernel_size"],
            pool_stride=g["stride"],
            pool_padding=g["padding"],
            ceil_mode=g["ceil_mode"],
        )

    def _forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        if not training:  # no argmax needed: the kernel skips writing it
            return ops.maxpool2d_forward(x, **self._geom, return_argmax=False, backend=self._ctx.backend)
        y, self._argmax = ops.maxpool2d_forward(x, **self._geom, backend=self._ctx.backend)
        self._x_shape = x.shape
        return y

    def _take_argmax(self) -> BackendArray:
        argmax, self._argmax = self._argmax, None
        if argmax is None:
            raise RuntimeError(f"{self.name}: backward called without a training forward before it")
        return argmax

    def _backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        return ops.maxpool2d_backward(dy, self._take_argmax(), self._x_shape, backend=self._ctx.backend)

    def backward_through(self, dy: BackendArray, source: ActivationSource) -> BackendArray | None:
        """The gradient before ``source``'s activation (the layer this pool reads): pool scatter and that
        activation's gradient in one pass, after which ``source`` skips its own; plain backward where
        ``source`` has no activation gradient to hand over (linear, softmax)."""
        taken = source.take_activation()
        if taken is None:
            return self.backward(dy)
        a, kind, alpha = taken
        return ops.maxpool2d_act_backward(
            dy, self._take_argmax(), a, kind, alpha=alpha, backend=self._ctx.backend
        )

    def _clear(self) -> None:
        self._argmax = None


class AveragePooling2D(_Pooling2D):
    """Average pooling; with padding='same' the divisor counts only real elements (as Keras)."""

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        out = super()._build(in_shape, ctx)
        self._geom["count_include_pad"] = False
        return out

    def _forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        if training:
            self._x_shape = x.shape
        return ops.avgpool2d_forward(x, **self._geom, backend=self._ctx.backend)

    def _backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        return ops.avgpool2d_backward(dy, self._x_shape, **self._geom, backend=self._ctx.backend)


class _GlobalPooling2D(Layer):
    """Pooling over the whole H x W plane: the pooling kernels with one window the size of the input
    (ops.*pool2d_* with kernel_size = stride = (H, W)). Output (C,), or (1, 1, C) with ``keepdims``."""

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"data_format must be 'channels_last', got {data_format!r}")
        self.keepdims = bool(keepdims)

    def _build(self, in_shape: Shape, ctx: Context) -> Shape:
        self._require_images(in_shape)
        c, h, w = in_shape
        self._geom: dict[str, Any] = {"kernel_size": (h, w), "stride": (h, w)}
        return (c, 1, 1) if self.keepdims else (c,)

    def _unflat(self, dy: BackendArray) -> BackendArray:
        return dy.reshape(dy.shape[0], dy.shape[1], 1, 1)

    def _out(self, y: BackendArray) -> BackendArray:
        return y if self.keepdims else y.reshape(y.shape[0], y.shape[1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    """The mean over H x W of each channel (ops.avgpool2d_*)."""

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        if training:
            self._x_shape = x.shape
        return self._out(ops.avgpool2d_forward(x, **self._geom, backend=self._ctx.backend))

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        return ops.avgpool2d_backward(
            self._unflat(dy), self._x_shape, **self._geom, backend=self._ctx.backend
        )


class GlobalMaxPooling2D(_GlobalPooling2D):
    """The maximum over H x W of each channel (ops.maxpool2d_*; the argmax kept for backward)."""

    _argmax: BackendArray | None = None

    def forward(self, x: BackendArray, training: bool = False, logits: bool = False) -> BackendArray:
        if not training:
            return self._out(
                ops.maxpool2d_forward(x, **self._geom, return_argmax=False, backend=self._ctx.backend)
            )
        y, self._argmax = ops.maxpool2d_forward(x, **self._geom, backend=self._ctx.backend)
        self._x_shape = x.shape
        return self._out(y)

    def backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        argmax, self._argmax = self._argmax, None
        if argmax is None:
            raise RuntimeError(f"{self.name}: backward called without a training forward before it")
        return ops.maxpool2d_backward(self._unflat(dy), argmax, self._x_shape, backend=self._ctx.backend)

    def _clear(self) -> None:
        self._argmax = None
