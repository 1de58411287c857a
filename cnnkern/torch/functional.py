"""cnnkern's kernels with torch.nn.functional's signatures: each checks its tensors (dtype, device, layout,
rank), normalises the arguments and calls one ``torch.ops.cnnkern`` op, so autograd, torch.compile and
torch.library.opcheck see a single custom op per layer (in plain eager mode through the cheaper
autograd.Function of :mod:`cnnkern.torch._eager`, which runs the same functions).

CPU tensors only; float32 runs on the current CPU backend (cpp, numba), float64 on the reference backend.
Outputs are NCHW-contiguous whatever the input's memory format (a channels_last input is copied once).
"""

from __future__ import annotations

from typing import Any, Union

import torch
from torch import Tensor

from .. import shapes
from ..kernels import ACTIVATIONS
from . import conv_ops, dense_ops, norm_ops, pool_ops  # noqa: F401  (registers the ops)
from ._bridge import check_tensor, same_dtype
from ._eager import call

IntPair = Union[int, tuple[int, int], list[int]]

__all__ = [
    "ACTIVATIONS",
    "avg_pool2d",
    "batch_norm",
    "conv2d",
    "conv2d_act_maxpool",
    "cross_entropy",
    "leaky_relu",
    "linear",
    "max_pool2d",
    "relu",
    "sigmoid",
    "tanh",
]


def _pair(name: str, v: Any) -> list[int]:
    if isinstance(v, int) and not isinstance(v, bool):
        return [v, v]
    if isinstance(v, (tuple, list)) and len(v) == 1:
        return _pair(name, v[0])
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return [int(v[0]), int(v[1])]
    raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")


def _activation(activation: str | None, alpha: float) -> tuple[str | None, float]:
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"activation must be None or one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if activation == "leaky_relu" and not alpha >= 0:
        raise ValueError(f"leaky_relu's negative_slope must be >= 0 for cnnkern's kernels, got {alpha}")
    return activation, float(alpha)


def _conv_args(
    x: Tensor, w: Tensor, b: Tensor | None, stride: IntPair, padding: IntPair | str, dilation: IntPair
) -> tuple[list[int], list[int], list[int]]:
    check_tensor("input", x, ndim=4)
    check_tensor("weight", w, ndim=4)
    if b is not None:
        check_tensor("bias", b, ndim=1)
    same_dtype(x, weight=w, bias=b)
    s, d = _pair("stride", stride), _pair("dilation", dilation)
    if padding == "valid":
        p = [0, 0]
    elif padding == "same":
        p = list(shapes.same_padding(x.shape[2], w.shape[2], s[0], d[0]))
        p += list(shapes.same_padding(x.shape[3], w.shape[3], s[1], d[1]))
    else:
        p = _pair("padding", padding)
    return s, p, d


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    activation: str | None = None,
    alpha: float = 0.01,
) -> Tensor:
    """F.conv2d, followed by ``activation`` (None or one of ACTIVATIONS; alpha: leaky_relu's slope) in the
    same kernel."""
    s, p, d = _conv_args(input, weight, bias, stride, padding, dilation)
    act, alpha = _activation(activation, alpha)
    return call(conv_ops.conv2d, input, weight, bias, s, p, d, int(groups), act, alpha)


def conv2d_act_maxpool(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    *,
    activation: str | None = None,
    alpha: float = 0.01,
    pool_size: IntPair,
    pool_stride: IntPair | None = None,
    pool_padding: IntPair = 0,
    pool_dilation: IntPair = 1,
    ceil_mode: bool = False,
) -> Tensor:
    """F.max_pool2d(act(F.conv2d(input, weight, bias, ...)), pool_size, ...) as one kernel."""
    s, p, d = _conv_args(input, weight, bias, stride, padding, dilation)
    act, alpha = _activation(activation, alpha)
    pk = _pair("pool_size", pool_size)
    ps = pk if pool_stride is None else _pair("pool_stride", pool_stride)
    pool = (
        pk,
        ps,
        _pair("pool_padding", pool_padding),
        _pair("pool_dilation", pool_dilation),
        bool(ceil_mode),
    )
    y, _ = call(conv_ops.conv2d_act_maxpool, input, weight, bias, s, p, d, int(groups), act, alpha, *pool)
    return y


def max_pool2d(
    input: Tensor,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """F.max_pool2d; the indices (return_indices) are torch's: flat positions in each H*W plane."""
    check_tensor("input", input, ndim=4)
    k = _pair("kernel_size", kernel_size)
    s = (
        k
        if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0)
        else _pair("stride", stride)
    )
    args = (k, s, _pair("padding", padding), _pair("dilation", dilation), bool(ceil_mode))
    y, argmax = call(pool_ops.max_pool2d, input, *args)
    return (y, argmax) if return_indices else y


def avg_pool2d(
    input: Tensor,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """F.avg_pool2d (divisor_override is not supported)."""
    check_tensor("input", input, ndim=4)
    if divisor_override is not None:
        raise ValueError(f"divisor_override is not supported by cnnkern's avg_pool2d, got {divisor_override}")
    k = _pair("kernel_size", kernel_size)
    s = (
        k
        if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0)
        else _pair("stride", stride)
    )
    args = (k, s, _pair("padding", padding), bool(ceil_mode), bool(count_include_pad))
    return call(pool_ops.avg_pool2d, input, *args)


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """F.batch_norm for (N,C,H,W): in training the running statistics (when given) are updated in place."""
    check_tensor("input", input, ndim=4)
    for name, t in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        if t is not None:
            check_tensor(name, t, ndim=1)
    same_dtype(input, running_mean=running_mean, running_var=running_var, weight=weight, bias=bias)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be given or both be None")
    if running_mean is None or running_var is None:
        if not training:
            raise ValueError("batch_norm without running statistics needs training=True (batch statistics)")
        c = input.shape[1]
        rm, rv = input.new_zeros(c), input.new_ones(c)
    else:
        rm, rv = running_mean, running_var
    y, _, _, new_mean, new_var = call(
        norm_ops.batch_norm, input, weight, bias, rm, rv, bool(training), float(momentum), float(eps)
    )
    if training and running_mean is not None and running_var is not None:
        with torch.no_grad():
            running_mean.copy_(new_mean)
            running_var.copy_(new_var)
    return y


def linear(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    activation: str | None = None,
    alpha: float = 0.01,
) -> Tensor:
    """F.linear (any leading dimensions), followed by ``activation`` in the same kernel."""
    check_tensor("input", input)
    check_tensor("weight", weight, ndim=2)
    if bias is not None:
        check_tensor("bias", bias, ndim=1)
    same_dtype(input, weight=weight, bias=bias)
    if input.dim() < 1 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"input's last dimension must be in_features={weight.shape[1]} (weight {tuple(weight.shape)}), "
            f"got input {tuple(input.shape)}"
        )
    act, alpha = _activation(activation, alpha)
    lead = input.shape[:-1]
    y = call(dense_ops.linear, input.reshape(-1, input.shape[-1]), weight, bias, act, alpha)
    return y if input.dim() == 2 else y.reshape(*lead, weight.shape[0])


def _act(x: Tensor, kind: str, alpha: float = 0.01) -> Tensor:
    check_tensor("input", x)
    _activation(kind, alpha)
    return call(dense_ops.activation, x, kind, float(alpha))


def relu(input: Tensor) -> Tensor:
    return _act(input, "relu")


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    return _act(input, "leaky_relu", negative_slope)


def sigmoid(input: Tensor) -> Tensor:
    return _act(input, "sigmoid")


def tanh(input: Tensor) -> Tensor:
    return _act(input, "tanh")


def cross_entropy(input: Tensor, target: Tensor) -> Tensor:
    """F.cross_entropy(input (N,C), target (N,) class indices) with the mean reduction (no weights, no label
    smoothing, no ignore_index)."""
    check_tensor("input", input, ndim=2)
    check_tensor("target", target, ndim=1, floating=False)
    if target.dtype != torch.int64:
        raise TypeError(f"target must hold int64 class indices, got {target.dtype}")
    loss, _ = call(dense_ops.softmax_cross_entropy, input, target)
    return loss
