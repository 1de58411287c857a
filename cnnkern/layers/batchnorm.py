"""Normalisation layers: :class:`BatchNormalization`."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from .._typing import BackendArray, Shape
from .base import ChannelsFirstMixin, Context, Layer, weights_changed


class BatchNormalization(ChannelsFirstMixin, Layer):
    """Batch normalisation over the channel axis (images) or the feature axis (flat input): ``axis=-1``
    (Keras's default), or ``axis=1`` for the channels of channels_first images (see ChannelsFirstMixin; on
    flat input both are the feature axis).

    ``convention='keras'`` (default, as the Keras layer of this name): momentum 0.99 weighting the OLD
    running value, epsilon 1e-3, running variance biased. ``convention='torch'``: PyTorch's BatchNorm2d,
    momentum 0.1 weighting the NEW batch statistic, eps 1e-5, running variance unbiased. ``momentum`` and
    ``epsilon`` override the convention's defaults and are read in that convention's sense. The convention
    is saved with the model (files written when 'torch' was the default name it, and load as they were).
    """

    def __init__(
        self,
        axis: int = -1,
        momentum: float | None = None,
        epsilon: float | None = None,
        center: bool = True,
        scale: bool = True,
        convention: str = "keras",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if axis not in (-1, 1) or isinstance(axis, bool):
            raise ValueError(
                f"axis must be -1 (the channels of (N, H, W, C) images) or 1 (of (N, C, H, W)), got {axis!r}"
            )
        self.axis = int(axis)
        self.data_format = "channels_first" if axis == 1 else "channels_last"
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
        self._pooled: tuple[Any, ...] | None = None  # forward_act_pool's (y, argmax, activation, alpha)

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

    def forward_act(self, x: BackendArray, training: bool, activation: str, alpha: float) -> BackendArray:
        """Batch norm with ``activation`` applied in its normalising pass (ops.batchnorm2d_act_forward): the
        plan's batch norm + activation step, in the model's own layout. Backward: the activation layer's
        gradient first, then this layer's :meth:`backward` as after :meth:`forward`."""
        return self._forward(x, training, activation=activation, alpha=alpha)

    def forward_act_pool(
        self, x: BackendArray, activation: str, alpha: float, pool: dict[str, Any]
    ) -> BackendArray:
        """Training: batch norm, ``activation`` and the max pool of geometry ``pool`` (a MaxPooling2D's
        fused_geometry) as one kernel (ops.batchnorm2d_act_maxpool_forward), returning the pooled output:
        the plan's batch norm + activation + max pool step. Backward: :meth:`backward_pooled`."""
        y, argmax = self._forward(x, True, activation=activation, alpha=alpha, pool=pool)
        self._pooled = (y, argmax, activation, alpha)
        return y

    def backward_pooled(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
        """The gradient before the batch norm from dy, the gradient of :meth:`forward_act_pool`'s output
        (ops.batchnorm2d_act_maxpool_backward)."""
        pooled, self._pooled = self._pooled, None
        if pooled is None:
            raise RuntimeError(f"{self.name}: backward called without a training forward before it")
        y, argmax, activation, alpha = pooled
        x, self._x = self._x, None
        dx, dgamma, dbeta = ops.batchnorm2d_act_maxpool_backward(
            dy,
            y,
            argmax,
            x,
            self.params.get("gamma"),
            self._mean,
            self._invstd,
            training=True,
            activation=activation,
            alpha=alpha,
            backend=self._ctx.backend,
        )
        self._keep_grads(dgamma, dbeta)
        return dx if need_dx else None

    def _forward(
        self,
        x: BackendArray,
        training: bool = False,
        logits: bool = False,
        activation: str | None = None,
        alpha: float = 0.01,
        pool: dict[str, Any] | None = None,
    ) -> Any:
        x4 = self._as4d(x)
        keras = self.convention == "keras"
        new_weight = 1.0 - self.momentum if keras else self.momentum
        rv = self.state["moving_variance"]
        rv_old = rv.copy() if training and keras else None
        gamma, beta, rm = self.params.get("gamma"), self.params.get("beta"), self.state["moving_mean"]
        kw: dict[str, Any] = dict(
            training=training,
            momentum=new_weight,
            eps=self.epsilon,
            activation=activation,
            alpha=alpha,
            backend=self._ctx.backend,
        )
        if pool is None:
            y, mean, invstd = ops.batchnorm2d_act_forward(x4, gamma, beta, rm, rv, **kw)
        else:
            y, argmax, mean, invstd = ops.batchnorm2d_act_maxpool_forward(
                x4, gamma, beta, rm, rv, **kw, **pool
            )
        if training:
            weights_changed()  # the kernel updated the running statistics in place
            if rv_old is not None:
                # the kernel blended in the unbiased variance (PyTorch's); Keras blends the biased one,
                # var = 1/invstd² − eps (inf / NaN for non-finite input, which cnnkern.nonfinite reports)
                with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                    var = 1.0 / (invstd * invstd) - self.epsilon
                    rv[...] = rv_old * self.momentum + var * new_weight
            self._x, self._mean, self._invstd = x4, mean, invstd
        return (y, argmax) if pool is not None else y.reshape(x.shape)

    def _backward(self, dy: BackendArray, need_dx: bool = True) -> BackendArray | None:
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
        self._keep_grads(dgamma, dbeta)
        return dx.reshape(dy.shape) if need_dx else None

    def _keep_grads(self, dgamma: BackendArray, dbeta: BackendArray) -> None:
        if self.scale:
            self.grads["gamma"] = dgamma
        if self.center:
            self.grads["beta"] = dbeta

    def _clear(self) -> None:
        self._x = None
        self._pooled = None

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            **({"axis": 1} if self.axis == 1 else {}),  # the default left out: configs stay as before
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "convention": self.convention,
        }
