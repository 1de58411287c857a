"""The kernel interface every backend implements (docs/design.md §2).

A backend is a subclass of :class:`Backend` with one method per kernel. The front door
(:mod:`cnnkern.ops`) validates and normalises every argument before calling a method, so a kernel may
assume:

* arrays are of the backend's kind (``self.array_module``: ``"numpy"`` or ``"cupy"``; the base class itself,
  never a subclass or a masked array), C-contiguous, aligned to their itemsize, in native byte order, of
  one dtype from ``self.dtypes`` shared by all floating arguments; ``labels`` and ``argmax`` are int64;
* ``stride``/``dilation``/``kernel_size`` are ``(h, w)`` tuples of ints >= 1, and every size-like integer
  (these, paddings, groups, shapes) is below 2**31; the call's outputs fit the memory limit;
* every dimension is >= 1, the batch included: the front door answers an empty batch itself;
* hyperparameters are finite; leaky_relu's ``alpha`` is >= 0, so every activation's backward can read the
  branch from the OUTPUT y (a negative slope would map x < 0 to y > 0);
* conv ``padding`` is ``(top, bottom, left, right)`` (asymmetric after ``'same'``), pool ``padding``
  is ``(ph, pw)`` with ``p <= k // 2``;
* every output dimension is >= 1, ``groups`` divides both channel counts, labels are in range;
* ``b`` (conv, dense) may be ``None``; in the optimizers ``velocity`` is ``None`` iff ``momentum == 0``.

Outputs are new arrays (backward writes, never accumulates into caller buffers); the optimizer updates
and batch norm's running statistics are the only in-place writes. Output sizes come from
:mod:`cnnkern.shapes`. ``softmax_cross_entropy_forward`` returns the loss as a 0-d array of the logits'
dtype (``float(loss)`` gives the number).

Methods not overridden raise ``NotImplementedError`` naming the backend and the kernel: a kernel a backend
lacks is an error, never a detour to another backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from .. import shapes
from .._typing import BackendArray
from ..kernel_methods import install, missing_method
from ..kernels import ACTIVATIONS, BASIC, FUSED

__all__ = ["ACTIVATIONS", "FUSED_KERNELS", "KERNELS", "Backend"]

KERNELS = tuple(kernel.name for kernel in BASIC)
# Fused kernels (docs/design.md §2: welcome as extra kernels; the unfused pairs stay the reference path). The
# base class composes them from the same backend's own unfused kernels, so every backend has them; a backend
# overrides them with a real fused kernel where that pays.
FUSED_KERNELS = tuple(kernel.name for kernel in FUSED)


class Backend:
    """Base of every backend: name, supported dtypes, array kind, and one method per kernel of
    :data:`cnnkern.kernels.TABLE` (signature and docstring from the table; the unfused kernels raise
    NotImplementedError until a backend overrides them, the fused ones compose the unfused)."""

    #: the registry name
    name = "base"
    #: the floating dtypes the kernels accept
    dtypes: tuple[str, ...] = ("float32",)
    #: "numpy" or "cupy": the kind of array the kernels take and return
    array_module = "numpy"
    #: True where maxpool2d_backward / maxpool2d_act_backward raise ValueError for an argmax outside the
    #: H*W plane themselves, so the front door skips its own scan over argmax (a pass over memory per call)
    checks_argmax = False

    if TYPE_CHECKING:  # the unfused kernels: installed from the kernel table below (kernel_methods.install)
        conv2d_forward: Callable[..., BackendArray]
        conv2d_backward: Callable[..., tuple[BackendArray | None, BackendArray | None, BackendArray | None]]
        maxpool2d_forward: Callable[..., tuple[BackendArray, BackendArray]]
        maxpool2d_backward: Callable[..., BackendArray]
        avgpool2d_forward: Callable[..., BackendArray]
        avgpool2d_backward: Callable[..., BackendArray]
        batchnorm2d_forward: Callable[..., tuple[BackendArray, BackendArray, BackendArray]]
        batchnorm2d_backward: Callable[..., tuple[BackendArray, BackendArray, BackendArray]]
        dense_forward: Callable[..., BackendArray]
        dense_backward: Callable[..., tuple[BackendArray | None, BackendArray | None, BackendArray | None]]
        activation_forward: Callable[..., BackendArray]
        activation_backward: Callable[..., BackendArray]
        softmax_cross_entropy_forward: Callable[..., tuple[BackendArray, BackendArray]]
        softmax_cross_entropy_backward: Callable[..., BackendArray]
        softmax_cross_entropy_soft_forward: Callable[..., tuple[BackendArray, BackendArray]]
        softmax_cross_entropy_soft_backward: Callable[..., BackendArray]
        sgd_update: Callable[..., None]
        adam_update: Callable[..., None]
        augment_shift_forward: Callable[..., BackendArray]
        augment_affine_forward: Callable[..., BackendArray]
        augment_color_forward: Callable[..., BackendArray]
        rmsprop_update: Callable[..., None]

    def info(self) -> dict[str, Any]:
        """Extra lines for ``cnnkern info`` (SIMD path, threads, devices...)."""
        return {}

    def synchronize(self) -> None:
        """Wait for queued work (a no-op on the CPU backends)."""

    def _missing(self, kernel: str) -> NoReturn:
        raise NotImplementedError(f"the {self.name!r} backend has no kernel {kernel!r}")

    # --- fused kernels: default compositions of this backend's own kernels (docstrings: the table) ---

    def conv2d_bias_act_forward(
        self,
        x: BackendArray,
        w: BackendArray,
        b: BackendArray | None = None,
        *,
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        groups: int,
        activation: str | None = None,
        alpha: float = 0.01,
    ) -> BackendArray:
        y = self.conv2d_forward(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
        return y if activation is None else self.activation_forward(y, activation, alpha=alpha)

    def batchnorm2d_act_forward(
        self,
        x: BackendArray,
        gamma: BackendArray,
        beta: BackendArray,
        running_mean: BackendArray,
        running_var: BackendArray,
        *,
        training: bool,
        momentum: float,
        eps: float,
        activation: str | None = None,
        alpha: float = 0.01,
    ) -> tuple[BackendArray, BackendArray, BackendArray]:
        stats = dict(training=training, momentum=momentum, eps=eps)
        y, mean, invstd = self.batchnorm2d_forward(x, gamma, beta, running_mean, running_var, **stats)
        if activation is not None:
            y = self.activation_forward(y, activation, alpha=alpha)
        return y, mean, invstd

    def dense_bias_act_forward(
        self,
        x: BackendArray,
        w: BackendArray,
        b: BackendArray | None = None,
        *,
        activation: str | None = None,
        alpha: float = 0.01,
    ) -> BackendArray:
        y = self.dense_forward(x, w, b)
        return y if activation is None else self.activation_forward(y, activation, alpha=alpha)

    def maxpool2d_values_forward(
        self,
        x: BackendArray,
        *,
        kernel_size: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        ceil_mode: bool,
    ) -> BackendArray:
        y, _ = self.maxpool2d_forward(
            x, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode
        )
        return y

    def maxpool2d_act_backward(
        self,
        dy: BackendArray,
        argmax: BackendArray,
        x_shape: Sequence[int],
        a: BackendArray,
        activation: str,
        *,
        alpha: float,
    ) -> BackendArray:
        dx = self.maxpool2d_backward(dy, argmax, x_shape)
        return self.activation_backward(dx, a, activation, alpha=alpha)

    def conv2d_act_maxpool_forward(
        self,
        x: BackendArray,
        w: BackendArray,
        b: BackendArray | None = None,
        *,
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        groups: int,
        activation: str | None = None,
        alpha: float = 0.01,
        pool_kernel: Sequence[int],
        pool_stride: Sequence[int],
        pool_padding: Sequence[int],
        pool_dilation: Sequence[int],
        pool_ceil_mode: bool,
        need_argmax: bool = True,
    ) -> tuple[BackendArray, BackendArray | None]:
        conv: dict[str, Any] = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        z = self.conv2d_bias_act_forward(x, w, b, **conv, activation=activation, alpha=alpha)
        pool: dict[str, Any] = dict(
            kernel_size=pool_kernel,
            stride=pool_stride,
            padding=pool_padding,
            dilation=pool_dilation,
            ceil_mode=pool_ceil_mode,
        )
        if need_argmax:
            return self.maxpool2d_forward(z, **pool)
        return self.maxpool2d_values_forward(z, **pool), None

    def conv2d_act_maxpool_backward(
        self,
        dy: BackendArray,
        y: BackendArray,
        argmax: BackendArray,
        x: BackendArray,
        w: BackendArray,
        *,
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        groups: int,
        activation: str | None = None,
        alpha: float = 0.01,
        need_dx: bool,
        need_dw: bool,
        need_db: bool,
    ) -> tuple[BackendArray | None, BackendArray | None, BackendArray | None]:
        g = dy if activation is None else self.activation_backward(dy, y, activation, alpha=alpha)
        z_shape = (x.shape[0], w.shape[0]) + shapes.conv_out_hw(x.shape, w.shape, stride, padding, dilation)
        dz = self.maxpool2d_backward(g, argmax, z_shape)
        conv: dict[str, Any] = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        return self.conv2d_backward(dz, x, w, **conv, need_dx=need_dx, need_dw=need_dw, need_db=need_db)

    def batchnorm2d_act_maxpool_forward(
        self,
        x: BackendArray,
        gamma: BackendArray,
        beta: BackendArray,
        running_mean: BackendArray,
        running_var: BackendArray,
        *,
        training: bool,
        momentum: float,
        eps: float,
        activation: str | None = None,
        alpha: float = 0.01,
        pool_kernel: Sequence[int],
        pool_stride: Sequence[int],
        pool_padding: Sequence[int],
        pool_dilation: Sequence[int],
        pool_ceil_mode: bool,
    ) -> tuple[BackendArray, BackendArray, BackendArray, BackendArray]:
        a, mean, invstd = self.batchnorm2d_act_forward(
            x,
            gamma,
            beta,
            running_mean,
            running_var,
            training=training,
            momentum=momentum,
            eps=eps,
            activation=activation,
            alpha=alpha,
        )
        y, argmax = self.maxpool2d_forward(
            a,
            kernel_size=pool_kernel,
            stride=pool_stride,
            padding=pool_padding,
            dilation=pool_dilation,
            ceil_mode=pool_ceil_mode,
        )
        return y, argmax, mean, invstd

    def batchnorm2d_act_maxpool_backward(
        self,
        dy: BackendArray,
        y: BackendArray,
        argmax: BackendArray,
        x: BackendArray,
        gamma: BackendArray,
        mean: BackendArray,
        invstd: BackendArray,
        *,
        training: bool,
        activation: str | None = None,
        alpha: float = 0.01,
    ) -> tuple[BackendArray, BackendArray, BackendArray]:
        g = dy if activation is None else self.activation_backward(dy, y, activation, alpha=alpha)
        dz = self.maxpool2d_backward(g, argmax, tuple(x.shape))
        return self.batchnorm2d_backward(dz, x, gamma, mean, invstd, training=training)

    def adam_update_multi(
        self,
        params: Sequence[BackendArray],
        grads: Sequence[BackendArray],
        ms: Sequence[BackendArray],
        vs: Sequence[BackendArray],
        *,
        step: int,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        eps_mode: str,
        decoupled_weight_decay: bool = False,
    ) -> None:
        for p, g, m, v in zip(params, grads, ms, vs):
            self.adam_update(
                p,
                g,
                m,
                v,
                step=step,
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                eps=eps,
                weight_decay=weight_decay,
                eps_mode=eps_mode,
                decoupled_weight_decay=decoupled_weight_decay,
            )


for _kernel in BASIC:
    install(Backend, missing_method(_kernel))
for _kernel in FUSED:  # the compositions above, documented from the table
    getattr(Backend, _kernel.name).__doc__ = _kernel.docstring()
