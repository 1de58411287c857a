"""Output-size arithmetic shared by the front door and every backend (docs/design.md §3)."""

from __future__ import annotations

from collections.abc import Sequence


def conv_out(length: int, k: int, stride: int, pad_lo: int, pad_hi: int, dilation: int) -> int:
    """conv2d output length along one dim: ``(L + p_lo + p_hi - (d(k-1)+1)) // s + 1``."""
    return (length + pad_lo + pad_hi - (dilation * (k - 1) + 1)) // stride + 1


def conv_out_hw(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> tuple[int, int]:
    """(P, Q) of conv2d on x (N,C,H,W) with w (K,C/g,R,S) and normalised arguments: stride and dilation
    pairs, padding (top, bottom, left, right)."""
    return (
        conv_out(x_shape[2], w_shape[2], stride[0], padding[0], padding[1], dilation[0]),
        conv_out(x_shape[3], w_shape[3], stride[1], padding[2], padding[3], dilation[1]),
    )


def same_padding(length: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """('same') padding (lo, hi) along one dim.

    stride 1 (PyTorch): ``K-1`` in total, the extra one at the end.
    stride > 1 (PyTorch refuses it; we follow TensorFlow): pad so that ``out = ceil(L/s)``, i.e. a total of
    ``max((ceil(L/s)-1)*s + K - L, 0)``, the extra one at the end.
    """
    keff = dilation * (k - 1) + 1
    if stride == 1:
        total = keff - 1
    else:
        out = -(-length // stride)
        total = max((out - 1) * stride + keff - length, 0)
    return total // 2, total - total // 2


def pool_out(length: int, k: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """Pool output length along one dim (PyTorch's rule, including the ceil_mode correction)."""
    num = length + 2 * pad - dilation * (k - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = num // stride + 1
    if ceil_mode and (out - 1) * stride >= length + pad:
        out -= 1
    return out
