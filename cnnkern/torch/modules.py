"""torch.nn layers running cnnkern's kernels. Each subclasses its torch.nn twin, so the constructor arguments,
parameter names, initialisation, ``state_dict`` layout and ``isinstance`` checks are torch's, and a checkpoint
moves between the two unchanged; only ``forward`` differs.

Conv2d and Linear take an extra ``activation`` (None or one of cnnkern.kernels.ACTIVATIONS) applied in the
same kernel, which :func:`cnnkern.torch.convert` sets when it fuses a following activation. ``inplace=True``
on the activations is accepted and computes out of place (the result is the same tensor values).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from . import functional as F

__all__ = [
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "ConvActPool2d",
    "CrossEntropyLoss",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "Sigmoid",
    "Tanh",
]


def _check_conv(conv: nn.Conv2d) -> None:
    if conv.padding_mode != "zeros":
        raise ValueError(f"cnnkern's conv2d pads with zeros only, got padding_mode={conv.padding_mode!r}")


def _conv_args(m: Conv2d | ConvActPool2d) -> tuple[Any, ...]:
    """F.conv2d's positional arguments after the input."""
    return (m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)


class Conv2d(nn.Conv2d):
    """nn.Conv2d (padding_mode 'zeros'), optionally followed by a fused activation."""

    def __init__(self, *args: Any, activation: str | None = None, alpha: float = 0.01, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _check_conv(self)
        self.activation, self.alpha = activation, alpha

    def forward(self, input: Tensor) -> Tensor:
        return F.conv2d(
            input,
            *_conv_args(self),
            activation=self.activation,
            alpha=self.alpha,
        )

    def extra_repr(self) -> str:
        act = "" if self.activation is None else f", activation={self.activation!r}"
        return super().extra_repr() + act


class ConvActPool2d(nn.Module):
    """Conv2d -> activation -> MaxPool2d as one kernel. Holds the convolution's ``weight`` and ``bias`` under
    nn.Conv2d's names (so a fused Sequential keeps its state_dict keys) and the pool's settings."""

    def __init__(
        self,
        conv: nn.Conv2d,
        pool: nn.MaxPool2d,
        activation: str | None = "relu",
        alpha: float = 0.01,
    ) -> None:
        super().__init__()
        _check_conv(conv)
        if pool.return_indices:
            raise ValueError(
                "a MaxPool2d with return_indices=True cannot be fused (its indices are the output)"
            )
        self.weight = conv.weight
        self.bias = conv.bias
        self.stride, self.padding, self.dilation, self.groups = (
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
        )
        self.activation, self.alpha = activation, alpha
        self.pool_size, self.pool_stride = pool.kernel_size, pool.stride
        self.pool_padding, self.pool_dilation, self.ceil_mode = pool.padding, pool.dilation, pool.ceil_mode

    def forward(self, input: Tensor) -> Tensor:
        return F.conv2d_act_maxpool(
            input,
            *_conv_args(self),
            activation=self.activation,
            alpha=self.alpha,
            pool_size=self.pool_size,
            pool_stride=self.pool_stride,
            pool_padding=self.pool_padding,
            pool_dilation=self.pool_dilation,
            ceil_mode=self.ceil_mode,
        )

    def extra_repr(self) -> str:
        k, c = self.weight.shape[0], self.weight.shape[1] * self.groups
        return (
            f"{c}, {k}, kernel_size={tuple(self.weight.shape[2:])}, stride={self.stride}, "
            f"padding={self.padding}, "
            f"activation={self.activation!r}, pool_size={self.pool_size}, pool_stride={self.pool_stride}"
        )


class MaxPool2d(nn.MaxPool2d):
    def forward(self, input: Tensor) -> Any:
        return F.max_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            self.return_indices,
        )


class AvgPool2d(nn.AvgPool2d):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.divisor_override is not None:
            raise ValueError(f"divisor_override is not supported by cnnkern, got {self.divisor_override}")

    def forward(self, input: Tensor) -> Tensor:
        return F.avg_pool2d(
            input, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad
        )


class BatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d; the running statistics, momentum=None (cumulative average) and
    track_running_stats=False behave as torch's."""

    def forward(self, input: Tensor) -> Tensor:
        # torch's _BatchNorm.forward, with cnnkern's kernel
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        return F.batch_norm(
            input,
            self.running_mean if keep else None,
            self.running_var if keep else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )


class Linear(nn.Linear):
    """nn.Linear, optionally followed by a fused activation."""

    def __init__(self, *args: Any, activation: str | None = None, alpha: float = 0.01, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.activation, self.alpha = activation, alpha

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias, activation=self.activation, alpha=self.alpha)

    def extra_repr(self) -> str:
        act = "" if self.activation is None else f", activation={self.activation!r}"
        return super().extra_repr() + act


class ReLU(nn.ReLU):
    def forward(self, input: Tensor) -> Tensor:
        return F.relu(input)


class LeakyReLU(nn.LeakyReLU):
    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        if not negative_slope >= 0:
            raise ValueError(f"cnnkern's leaky_relu needs negative_slope >= 0, got {negative_slope}")
        super().__init__(negative_slope, inplace)

    def forward(self, input: Tensor) -> Tensor:
        return F.leaky_relu(input, self.negative_slope)


class Sigmoid(nn.Sigmoid):
    def forward(self, input: Tensor) -> Tensor:
        return F.sigmoid(input)


class Tanh(nn.Tanh):
    def forward(self, input: Tensor) -> Tensor:
        return F.tanh(input)


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """nn.CrossEntropyLoss with class-index targets and its defaults only (mean reduction, no weight, no
    label smoothing, ignore_index never met)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.weight is not None or self.reduction != "mean" or self.label_smoothing != 0.0:
            raise ValueError(
                "cnnkern's CrossEntropyLoss supports weight=None, reduction='mean', label_smoothing=0 only"
            )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(input, target)
