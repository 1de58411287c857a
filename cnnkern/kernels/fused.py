"""The fused floating-point kernels: each equals a composition of unfused ones, Backend's default (see
:mod:`cnnkern.kernels`)."""

from __future__ import annotations

from .basic import BASIC
from .entry import ACT, ADAM, CONV, CONV_GRADS, DXDWDB, NEED_DX_DW_DB, PAIR, Kernel, a, k


def _basic(name: str) -> Kernel:
    """The unfused kernel ``name``, whose arguments a fused kernel extends."""
    return next(kernel for kernel in BASIC if kernel.name == name)


# the max pool's keywords of the fused kernels that pool (the front door's names in _FRONT_POOL)
_POOL = (
    k("pool_kernel", PAIR),
    k("pool_stride", PAIR),
    k("pool_padding", PAIR),
    k("pool_dilation", PAIR),
    k("pool_ceil_mode", "bool"),
)
_FRONT_POOL = (
    k("pool_size", PAIR),
    k("pool_stride", PAIR, front=None),
    k("pool_padding", PAIR, front=0),
    k("pool_dilation", PAIR, front=1),
    k("ceil_mode", "bool", front=False),
    k("return_argmax", "bool", front=True),
)

FUSED: tuple[Kernel, ...] = (
    Kernel(
        "conv2d_bias_act_forward",
        "conv",
        _basic("conv2d_forward").args + ACT,
        "y (N,K,P,Q)",
        "Convolution, bias and activation in one kernel.",
        fused="activation_forward(conv2d_forward(x, w, b), activation) (activation None: no activation)",
    ),
    Kernel(
        "batchnorm2d_act_forward",
        "batchnorm",
        _basic("batchnorm2d_forward").args + ACT,
        "(y = act(batch norm of x), mean (C,), invstd (C,))",
        "Batch norm with the activation applied in its normalising pass (the plan's batch norm + "
        "activation step).",
        returns_type="tuple[F32, F32, F32]",
        inplace=_basic("batchnorm2d_forward").inplace,
        fused="batchnorm2d_forward(...) with activation_forward applied to its y",
    ),
    Kernel(
        "dense_bias_act_forward",
        "dense",
        _basic("dense_forward").args + ACT,
        "y (N,out)",
        "Dense layer, bias and activation in one kernel.",
        fused="activation_forward(dense_forward(x, w, b), activation) (activation None: no activation)",
    ),
    Kernel(
        "maxpool2d_act_backward",
        "pool",
        (
            *_basic("maxpool2d_backward").args,
            a("a", doc="act(z), (N,C,H,W): the pool's input"),
            a("activation", "str", doc="one of ACTIVATIONS"),
            k("alpha", "float", front=0.01),
        ),
        "dz (N,C,H,W), the gradient of maxpool(act(z)) with respect to z",
        "Max-pool backward and the preceding activation's gradient in one pass.",
        fused="activation_backward(maxpool2d_backward(dy, argmax, x_shape), a, activation)",
        front_args=(
            a("dy"),
            a("argmax", "I64"),
            a("a"),
            a("activation", "str"),
            _basic("activation_forward").args[-1],
        ),
    ),
    Kernel(
        "maxpool2d_values_forward",
        "pool",
        _basic("maxpool2d_forward").args,
        "y (N,C,P,Q)",
        "Max pooling without the argmax (inference): the front door's maxpool2d_forward(..., "
        "return_argmax=False).",
        fused="maxpool2d_forward(x, ...)[0]",
        has_front_door=False,
    ),
    Kernel(
        "conv2d_act_maxpool_forward",
        "conv_pool",
        _basic("conv2d_forward").args + ACT + _POOL + (k("need_argmax", "bool", True),),
        "(y (N,K,P',Q'), argmax | None): argmax a flat index into the conv output's P*Q plane, None unless "
        "need_argmax",
        "Convolution, bias, activation and max pooling as one kernel.",
        returns_type="tuple[F32, I64 | None]",
        fused="maxpool2d_forward(conv2d_bias_act_forward(x, w, b, ...), kernel_size=pool_kernel, ...)",
        front_args=_basic("conv2d_forward").args + ACT + _FRONT_POOL,
    ),
    Kernel(
        "conv2d_act_maxpool_backward",
        "conv_pool",
        (a("dy", doc="(N,K,P',Q')"), a("y"), a("argmax", "I64"), a("x"), a("w"), *CONV, *ACT, *NEED_DX_DW_DB),
        CONV_GRADS,
        "The gradients of conv2d_act_maxpool_forward from dy and its outputs y, argmax.",
        returns_type=DXDWDB,
        fused="conv2d_backward(maxpool2d_backward(activation_backward(dy, y, activation), argmax, z_shape), "
        "x, w): the activation's gradient is taken at the pooled values, which argmax points at",
    ),
    Kernel(
        "batchnorm2d_act_maxpool_forward",
        "batchnorm",
        _basic("batchnorm2d_forward").args + ACT + _POOL,
        "(y (N,C,P,Q), argmax (N,C,P,Q): a flat index into the H*W plane, mean (C,), invstd (C,))",
        "Batch norm, activation and max pooling as one kernel (the plan's conv + batch norm + activation + "
        "max pool in training): the normalised values are pooled where they are computed.",
        returns_type="tuple[F32, I64, F32, F32]",
        inplace=_basic("batchnorm2d_forward").inplace,
        fused="maxpool2d_forward(batchnorm2d_act_forward(x, ...)[0], kernel_size=pool_kernel, ...) with "
        "batchnorm2d_act_forward's mean and invstd",
        front_args=_basic("batchnorm2d_forward").args + ACT + _FRONT_POOL[:-1],
    ),
    Kernel(
        "batchnorm2d_act_maxpool_backward",
        "batchnorm",
        (
            a("dy", doc="(N,C,P,Q)"),
            a("y", doc="the forward's pooled output"),
            a("argmax", "I64"),
            a("x", doc="(N,C,H,W): the batch norm's input"),
            a("gamma"),
            a("mean"),
            a("invstd"),
            k("training", "bool", front=True),
            *ACT,
        ),
        "(dx (N,C,H,W), dgamma (C,), dbeta (C,))",
        "The gradients of batchnorm2d_act_maxpool_forward from dy and its outputs y, argmax, mean, invstd.",
        returns_type="tuple[F32, F32, F32]",
        fused="batchnorm2d_backward(maxpool2d_backward(activation_backward(dy, y, activation), argmax, "
        "x.shape), x, gamma, mean, invstd): the activation's gradient is taken at the pooled values, which "
        "argmax points at",
    ),
    Kernel(
        "adam_update_multi",
        "optim",
        (
            a("params", "Sequence[F32]"),
            a("grads", "Sequence[F32]"),
            a("ms", "Sequence[F32]"),
            a("vs", "Sequence[F32]"),
            *ADAM,
        ),
        "None",
        "adam_update over lists of same-shaped (param, grad, m, v) quadruples, one step for all.",
        returns_type="None",
        inplace=("params", "ms", "vs"),
        fused="adam_update(p, g, m, v, ...) for each quadruple",
    ),
)
