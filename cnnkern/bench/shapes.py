"""Named layer shapes for the benchmarks, with the FLOP and byte counts every report quotes.

The classic CNN is Keras's Fashion-MNIST example (93,322 parameters)::

    28x28x1 -> conv1 1->32 3x3 (26x26), ReLU -> pool1 26->13 -> conv2 32->64 3x3 (11x11), ReLU
            -> pool2 11->5 -> conv3 64->64 3x3 (3x3), ReLU -> Flatten 576 -> dense1 576->64, ReLU
            -> dense2 64->10 -> softmax cross-entropy; Adam

plus two ResNet-like 3x3 convolutions (pad 1, batch 8) that are large enough for the GEMM to dominate.

Counting rules, the same for every backend and for PyTorch:

* conv and dense: a multiply-add is 2 FLOPs; forward = 2·N·K·P·Q·C·R·S (dense 2·N·in·out). Backward: dx
  and dw each cost a forward, db is N·K·P·Q adds. The first conv of a network needs no dx (nothing to pass
  it to), so its backward is dw and db only, as in training.
* memory-bound ops (pooling, activations, batch norm, loss, Adam): ``bytes`` is the compulsory traffic,
  each input read once and each output written once (float32 4 B, int64 argmax 8 B); GB/s is bytes / time.
  Their FLOP counts are per element: pool k² − 1 comparisons per output; ReLU 1; batch norm 8 forward
  (sum, centre, square-add, scale, affine) and 10 backward; loss 4 per logit; Adam 12 per parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Union

from .. import shapes as _out
from .._typing import Shape

F32 = 4
I64 = 8


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


@dataclass(frozen=True)
class Conv:
    """x (n,c,h,w), w (k,c,r,s), stride 1, symmetric padding ``pad`` -> y (n,k,p,q)."""

    name: str
    n: int
    c: int
    k: int
    h: int
    w: int
    r: int = 3
    s: int = 3
    pad: int = 0
    first: bool = False  # the network's first layer: its backward computes dw, db only

    @property
    def p(self) -> int:
        return _out.conv_out(self.h, self.r, 1, self.pad, self.pad, 1)

    @property
    def q(self) -> int:
        return _out.conv_out(self.w, self.s, 1, self.pad, self.pad, 1)

    @property
    def label(self) -> str:
        pad = f" pad {self.pad}" if self.pad else ""
        return f"{self.name} {self.c}->{self.k} {self.h}x{self.w} {self.r}x{self.s}{pad} b{self.n}"

    def forward_flops(self) -> int:
        return 2 * self.n * self.k * self.p * self.q * self.c * self.r * self.s

    def backward_flops(self) -> int:
        return (1 if self.first else 2) * self.forward_flops() + self.n * self.k * self.p * self.q

    def forward_bytes(self) -> int:
        return F32 * (
            self.n * self.c * self.h * self.w
            + self.k * self.c * self.r * self.s
            + self.k
            + self.n * self.k * self.p * self.q
        )

    def backward_bytes(self) -> int:
        y = self.n * self.k * self.p * self.q
        x = self.n * self.c * self.h * self.w
        wt = self.k * self.c * self.r * self.s
        return F32 * (y + x + wt + wt + self.k + (0 if self.first else x))


@dataclass(frozen=True)
class Pool:
    """Max pooling, window = stride = k, no padding: x (n,c,h,w) -> y, argmax (n,c,h//k,w//k)."""

    name: str
    n: int
    c: int
    h: int
    w: int
    k: int = 2

    @property
    def p(self) -> int:
        return _out.pool_out(self.h, self.k, self.k, 0, 1, False)

    @property
    def q(self) -> int:
        return _out.pool_out(self.w, self.k, self.k, 0, 1, False)

    @property
    def label(self) -> str:
        return f"{self.name} {self.c}x{self.h}x{self.w} -> {self.p}x{self.q} b{self.n}"

    def forward_flops(self) -> int:
        return self.n * self.c * self.p * self.q * (self.k * self.k - 1)

    def backward_flops(self) -> int:
        return self.n * self.c * self.p * self.q

    def forward_bytes(self) -> int:
        return self.n * self.c * (F32 * self.h * self.w + (F32 + I64) * self.p * self.q)

    def backward_bytes(self) -> int:
        return self.n * self.c * ((F32 + I64) * self.p * self.q + F32 * self.h * self.w)


@dataclass(frozen=True)
class Dense:
    """x (n,fin), w (fout,fin), b (fout,) -> y (n,fout)."""

    name: str
    n: int
    fin: int
    fout: int
    need_dx: bool = True

    @property
    def label(self) -> str:
        return f"{self.name} {self.fin}->{self.fout} b{self.n}"

    def forward_flops(self) -> int:
        return 2 * self.n * self.fin * self.fout

    def backward_flops(self) -> int:
        return (2 if self.need_dx else 1) * self.forward_flops() + self.n * self.fout

    def forward_bytes(self) -> int:
        return F32 * (self.n * self.fin + self.fout * self.fin + self.fout + self.n * self.fout)

    def backward_bytes(self) -> int:
        dx = self.n * self.fin if self.need_dx else 0
        return F32 * (self.n * self.fout + self.n * self.fin + 2 * self.fout * self.fin + self.fout + dx)


@dataclass(frozen=True)
class Elementwise:
    """An activation over a tensor of ``shape`` (batch first)."""

    name: str
    shape: Shape
    kind: str = "relu"

    @property
    def n(self) -> int:
        return self.shape[0]

    @property
    def label(self) -> str:
        return f"{self.name} {self.kind} {'x'.join(map(str, self.shape[1:]))} b{self.n}"

    def forward_flops(self) -> int:
        return _numel(self.shape)

    def backward_flops(self) -> int:
        return _numel(self.shape)

    def forward_bytes(self) -> int:
        return 2 * F32 * _numel(self.shape)

    def backward_bytes(self) -> int:
        return 3 * F32 * _numel(self.shape)


@dataclass(frozen=True)
class BatchNorm:
    """Training-mode batch norm over x (n,c,h,w), per channel."""

    name: str
    n: int
    c: int
    h: int
    w: int

    @property
    def label(self) -> str:
        return f"{self.name} {self.c}x{self.h}x{self.w} b{self.n}"

    def forward_flops(self) -> int:
        return 8 * self.n * self.c * self.h * self.w

    def backward_flops(self) -> int:
        return 10 * self.n * self.c * self.h * self.w

    def forward_bytes(self) -> int:
        return F32 * (2 * self.n * self.c * self.h * self.w + 8 * self.c)

    def backward_bytes(self) -> int:
        return F32 * (3 * self.n * self.c * self.h * self.w + 5 * self.c)


@dataclass(frozen=True)
class Loss:
    """Softmax cross-entropy over logits (n, classes) with int64 labels (n,)."""

    name: str
    n: int
    classes: int = 10

    @property
    def label(self) -> str:
        return f"{self.name} {self.classes} classes b{self.n}"

    def forward_flops(self) -> int:
        return 4 * self.n * self.classes

    def backward_flops(self) -> int:
        return 2 * self.n * self.classes

    def forward_bytes(self) -> int:
        return 2 * F32 * self.n * self.classes + I64 * self.n

    def backward_bytes(self) -> int:
        return 2 * F32 * self.n * self.classes + I64 * self.n


@dataclass(frozen=True)
class Params:
    """An optimizer step over parameters of ``shapes`` (one update call per parameter)."""

    name: str
    shapes: tuple[Shape, ...]

    @property
    def count(self) -> int:
        return sum(_numel(s) for s in self.shapes)

    @property
    def label(self) -> str:
        return f"{self.name} {len(self.shapes)} tensors, {self.count} values"

    def forward_flops(self) -> int:
        return 12 * self.count

    def forward_bytes(self) -> int:
        return 7 * F32 * self.count  # read param, grad, m, v; write param, m, v


CLASSIC_PARAM_SHAPES = (
    (32, 1, 3, 3),
    (32,),
    (64, 32, 3, 3),
    (64,),
    (64, 64, 3, 3),
    (64,),
    (64, 576),
    (64,),
    (10, 64),
    (10,),
)


def classic_layers(batch: int) -> dict[str, Layer]:
    """The classic CNN's layers at batch size ``batch``, by name, in network order."""
    n = batch
    layers: list[Layer] = [
        Conv("conv1", n, 1, 32, 28, 28, first=True),
        Elementwise("relu1", (n, 32, 26, 26)),
        Pool("pool1", n, 32, 26, 26),
        Conv("conv2", n, 32, 64, 13, 13),
        Elementwise("relu2", (n, 64, 11, 11)),
        Pool("pool2", n, 64, 11, 11),
        Conv("conv3", n, 64, 64, 5, 5),
        Elementwise("relu3", (n, 64, 3, 3)),
        Dense("dense1", n, 576, 64),
        Elementwise("relu4", (n, 64)),
        Dense("dense2", n, 64, 10),
        Loss("loss", n),
        Params("adam", CLASSIC_PARAM_SHAPES),
    ]
    return {layer.name: layer for layer in layers}


Layer = Union[Conv, Pool, Dense, Elementwise, Loss, Params]
"""A layer of :func:`classic_layers`."""


@dataclass(frozen=True)
class ConvPool:
    """A conv, its ReLU and the max pool after it as the model layer runs them: one kernel pair
    (ops.conv2d_act_maxpool_forward / _backward). FLOPs are the conv's and the pool's; bytes leave out the
    conv output (written and read back by the unfused pair), which the fused kernel need not send through
    memory, and add reading the pooled output once in the backward (the ReLU's gradient is taken there)."""

    conv: Conv
    pool: Pool

    @property
    def name(self) -> str:
        return f"{self.conv.name}+{self.pool.name}"

    @property
    def n(self) -> int:
        return self.conv.n

    @property
    def label(self) -> str:
        c = self.conv
        return f"{self.name} {c.c}->{c.k} {c.h}x{c.w} {c.r}x{c.s} relu pool {self.pool.k} b{c.n}"

    def _z(self) -> int:
        return F32 * self.conv.n * self.conv.k * self.conv.p * self.conv.q

    def forward_flops(self) -> int:
        return self.conv.forward_flops() + self.pool.forward_flops()

    def backward_flops(self) -> int:
        return self.conv.backward_flops() + self.pool.backward_flops()

    def forward_bytes(self) -> int:
        return self.conv.forward_bytes() + self.pool.forward_bytes() - 2 * self._z()

    def backward_bytes(self) -> int:
        pooled = F32 * self.pool.n * self.pool.c * self.pool.p * self.pool.q
        return self.conv.backward_bytes() + self.pool.backward_bytes() - 2 * self._z() + pooled


def conv_pool_pairs(batch: int) -> dict[str, ConvPool]:
    """The classic CNN's conv + ReLU + max pool pairs at ``batch`` (conv1+pool1, conv2+pool2), by name."""
    specs = list(classic_layers(batch).values())
    pairs: dict[str, ConvPool] = {}
    for conv, act, pool in zip(specs, specs[1:], specs[2:]):
        if isinstance(conv, Conv) and isinstance(act, Elementwise) and isinstance(pool, Pool):
            pair = ConvPool(conv, pool)
            pairs[pair.name] = pair
    return pairs


def resnet_convs() -> dict[str, Conv]:
    """Two ResNet-like 3x3 convolutions at batch 8 (the GEMM-bound regime)."""
    return {
        "res64": Conv("res64", 8, 64, 64, 56, 56, pad=1),
        "res128": Conv("res128", 8, 128, 128, 28, 28, pad=1),
    }


def batchnorm_shapes(batch: int) -> dict[str, BatchNorm]:
    """Batch norm over the classic CNN's first two conv outputs at ``batch`` and the ResNet-like shapes."""
    return {
        "bn1": BatchNorm("bn1", batch, 32, 26, 26),
        "bn2": BatchNorm("bn2", batch, 64, 11, 11),
        "bn_res64": BatchNorm("bn_res64", 8, 64, 56, 56),
        "bn_res128": BatchNorm("bn_res128", 8, 128, 28, 28),
    }


def train_step_flops(batch: int) -> int:
    """FLOPs of one classic-CNN training step: conv and dense, forward and backward (the rest is < 1%)."""
    return sum(
        layer.forward_flops() + layer.backward_flops()
        for layer in classic_layers(batch).values()
        if isinstance(layer, (Conv, Dense))
    )


def inference_flops(batch: int) -> int:
    """FLOPs of one classic-CNN forward pass: conv and dense."""
    return sum(
        layer.forward_flops() for layer in classic_layers(batch).values() if isinstance(layer, (Conv, Dense))
    )
