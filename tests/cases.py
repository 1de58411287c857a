"""Named shape cases, shared by the conformance tests and the benchmarks.

The conformance cases cross the tails of every vectorised loop: widths and channel counts of 1, 3, 7, 8, 9,
15, 16, 17, 33 (around SIMD widths 8 and 16), batches of 1, 2, 3, stride 2, every padding form, dilation,
non-square kernels, groups. They are a curated list, not a cartesian product, so that the whole suite runs in
minutes on two cores with every backend.

``CNN_LAYERS`` (the classic Fashion-MNIST CNN's layers at batch 32 and 128) and ``RESNET_CONVS`` (two larger
ResNet-like 3x3 convolutions) are the benchmark shapes of :mod:`cnnkern.bench.shapes` as conformance cases;
the batch-32 layers are part of the conformance lists.

Inputs are float32-representable float64 arrays: the reference runs on exactly the values the backend gets in
float32, so a comparison measures only the backend's arithmetic.
"""

from dataclasses import dataclass, field

import numpy as np


def randn(shape, seed, scale=1.0, offset=0.0):
    """Standard-normal values (times scale, plus offset), rounded to float32, as float64."""
    a = np.random.default_rng(seed).standard_normal(shape) * scale + offset
    return a.astype(np.float32).astype(np.float64)


def randint(shape, seed, lo=-3, hi=3):
    """Small integers in [lo, hi] as float64: every partial sum of a small conv/GEMM is exact in float32."""
    return np.random.default_rng(seed).integers(lo, hi + 1, size=shape).astype(np.float64)


def distinct(shape, seed):
    """Values that are all different and at least 1/64 apart (no ties, no near-ties), in random order."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n) / 64.0 - n / 128.0).reshape(shape)


@dataclass(frozen=True)
class ConvCase:
    id: str
    x: tuple  # (N, C, H, W)
    w: tuple  # (K, C/groups, R, S)
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    bias: bool = True

    def kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)


@dataclass(frozen=True)
class PoolCase:
    id: str
    x: tuple
    kernel_size: object
    stride: object = None
    padding: object = 0
    dilation: object = 1  # max pool only
    ceil_mode: bool = False
    count_include_pad: bool = True  # avg pool only

    def max_kwargs(self):
        return dict(
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            ceil_mode=self.ceil_mode,
        )

    def avg_kwargs(self):
        return dict(
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
        )


@dataclass(frozen=True)
class BatchNormCase:
    id: str
    x: tuple
    momentum: float = 0.1
    eps: float = 1e-5
    offset: float = 0.0  # nonzero: x = offset + k/8, |k| <= 16 integer, see batchnorm_input
    scale: float = 1.0


def batchnorm_input(case, seed):
    """x for a batch-norm case. With an offset, x = offset + k/8 for integers |k| <= 16: every partial sum of
    up to 2^11 such values is exact in float32, so a two-pass mean and variance come out exact in any
    summation order, while the one-pass E[x²]−E[x]² loses the variance (x² ~ 1e6, variance ~1.4) even with
    float32 pairwise summation."""
    if case.offset:
        return case.offset + randint(case.x, seed, -16, 16) / 8
    return randn(case.x, seed, scale=case.scale)


@dataclass(frozen=True)
class DenseCase:
    id: str
    n: int
    fan_in: int
    fan_out: int
    bias: bool = True


@dataclass(frozen=True)
class LossCase:
    id: str
    n: int
    classes: int
    scale: float = 3.0
    labels: str = "random"  # or 'first' (all 0), 'last' (all C-1), 'ends' (alternating 0 and C-1)


@dataclass(frozen=True)
class ActivationCase:
    id: str
    shape: tuple
    specials: tuple = field(default=())  # values planted at the start of the flattened input


CONV_CASES = [
    ConvCase("1x1-image-1x1-kernel", (1, 1, 1, 1), (1, 1, 1, 1)),
    ConvCase("basic-3x3-pad1", (2, 3, 7, 7), (8, 3, 3, 3), padding=1),
    ConvCase("c16-k17-9x15", (1, 16, 9, 15), (17, 16, 3, 3), padding=1),
    # one input channel, 3x3 'valid': the direct one-channel kernel, split over images and blocks of 4 filters
    ConvCase("c1-k7-one-image", (1, 1, 9, 12), (7, 1, 3, 3)),
    ConvCase("c1-k5-batch2", (2, 1, 10, 11), (5, 1, 3, 3), bias=False),
    # the few-channel direct kernels (c1) over zero-bordered planes: one channel padded, four padded by 2
    ConvCase("c1-pad1-k6-w21", (2, 1, 9, 21), (6, 1, 3, 3), padding=1),
    ConvCase("c4-pad2-k5", (2, 4, 7, 11), (5, 4, 3, 3), padding=2),
    ConvCase("c17-k15-batch3", (3, 17, 8, 17), (15, 17, 3, 3)),
    ConvCase("1x1-c33-k33", (2, 33, 9, 9), (33, 33, 1, 1)),
    ConvCase("c9-k7-16x16", (2, 9, 16, 16), (7, 9, 3, 3), padding=1),
    ConvCase("stride2-pad1", (2, 7, 15, 16), (9, 7, 3, 3), stride=2, padding=1),
    ConvCase("stride-pair-pad-pair", (1, 3, 16, 17), (8, 3, 3, 3), stride=(2, 1), padding=(1, 0)),
    ConvCase("stride3-leftover", (1, 3, 16, 16), (5, 3, 3, 3), stride=3),
    ConvCase("same-3x3", (2, 3, 9, 8), (7, 3, 3, 3), padding="same"),
    ConvCase("same-even-4x2", (1, 3, 8, 9), (4, 3, 4, 2), padding="same"),
    ConvCase("same-stride2", (2, 3, 9, 16), (8, 3, 3, 3), stride=2, padding="same"),
    ConvCase("same-stride2-even-4x4", (1, 4, 15, 8), (3, 4, 4, 4), stride=2, padding="same"),
    ConvCase("same-dilation2", (1, 3, 9, 9), (3, 3, 3, 3), padding="same", dilation=2),
    ConvCase("valid-5x5", (2, 3, 8, 8), (8, 3, 5, 5), padding="valid"),
    ConvCase("dilation2-pad2", (1, 3, 15, 15), (8, 3, 3, 3), dilation=2, padding=2),
    ConvCase("dilation-pair-nonsquare", (2, 4, 16, 9), (3, 4, 3, 2), dilation=(2, 3), padding=(1, 2)),
    ConvCase("kernel-1x7-w33", (2, 3, 7, 33), (8, 3, 1, 7), padding=(0, 3)),
    ConvCase("width1-kernel-3x1", (2, 3, 17, 1), (8, 3, 3, 1), padding=(1, 0)),
    ConvCase("groups2", (2, 8, 9, 9), (16, 4, 3, 3), padding=1, groups=2),
    ConvCase("depthwise-c16", (3, 16, 15, 15), (16, 1, 3, 3), padding=1, groups=16),
    ConvCase("depthwise-mult2-stride2", (1, 8, 9, 9), (16, 1, 5, 5), stride=2, padding=2, groups=8),
    # strided convs (the cpp backend's indirect GEMMs for the forward and dw, over a padded copy of x when
    # padded): filter counts off multiples of 16, taps and pixels off the 6-row tiles, a 1x1 and a pair
    ConvCase("stride2-c10-k20-same-even", (3, 10, 12, 14), (20, 10, 3, 3), stride=2, padding="same"),
    ConvCase("stride2-1x1-c9-k17", (2, 9, 9, 11), (17, 9, 1, 1), stride=2),
    ConvCase("stride-pair-5x5-c8-k33", (2, 8, 13, 11), (33, 8, 5, 5), stride=(2, 3), padding=2, bias=False),
    # grouped convs with 8+ channels per group (the cpp backend's indirect GEMMs, group by group): filter and
    # channel counts per group off multiples of 8 and 16, padded and not
    ConvCase("groups4-c32-k36-same-w13", (2, 32, 9, 13), (36, 8, 3, 3), padding="same", groups=4),
    ConvCase("groups2-c18-valid-5x3", (3, 18, 10, 11), (6, 9, 5, 3), groups=2, bias=False),
    # depthwise convs (the cpp backend's direct kernels over a padded, phase-split frame): output widths that
    # cross the 16-, 8-wide and masked tails, channel counts off multiples of 8, strides, dilation, padding
    ConvCase("depthwise-c13-w37-same", (2, 13, 6, 37), (13, 1, 3, 3), padding="same", groups=13),
    ConvCase(
        "depthwise-c10-stride2-same-even",
        (3, 10, 10, 36),
        (10, 1, 3, 3),
        stride=2,
        padding="same",
        groups=10,
        bias=False,
    ),
    ConvCase(
        "depthwise-c6-stride-dilation-pairs",
        (2, 6, 13, 23),
        (6, 1, 3, 2),
        stride=(2, 3),
        padding=(2, 1),
        dilation=(2, 2),
        groups=6,
    ),
    ConvCase("depthwise-c4-5x5-valid-w9", (1, 4, 9, 13), (4, 1, 5, 5), groups=4),
    # depthwise dx gathers phase by phase (stride 2: two column phases interleaved, 8 wide with tails);
    # odd sizes, one image, input pixels no tap reaches, padding past the kernel
    ConvCase("depthwise-c7-stride2-pad1-17x19", (1, 7, 17, 19), (7, 1, 3, 3), stride=2, padding=1, groups=7),
    ConvCase("depthwise-c24-stride2-pad1-w40", (2, 24, 9, 40), (24, 1, 3, 3), stride=2, padding=1, groups=24),
    ConvCase("depthwise-c3-stride2-valid-8x8", (2, 3, 8, 8), (3, 1, 3, 3), stride=2, groups=3, bias=False),
    ConvCase("depthwise-c5-pad3-6x7", (2, 5, 6, 7), (5, 1, 3, 3), padding=3, groups=5),
    # pointwise convs (the cpp backend's dw as in-place dot products, 3 x 4 tiles of 8 lanes): filter and
    # channel counts off the tiles, pixels off multiples of 8, one image and several chunks of images
    ConvCase("pointwise-c5-k7-one-image-7x9", (1, 5, 7, 9), (7, 5, 1, 1)),
    ConvCase("pointwise-c18-k35-batch6-10x11", (6, 18, 10, 11), (35, 18, 1, 1)),
    ConvCase("pointwise-c3-k13-batch16-8x8", (16, 3, 8, 8), (13, 3, 1, 1), bias=False),
    ConvCase("no-bias", (2, 9, 8, 8), (16, 9, 3, 3), padding=1, bias=False),
    # the heuristics' Winograd F(2x2, 3x3) (64 channels both ways, 12x12 and more, 2048+ output pixels in
    # all): 'valid' with an odd width (a tile half outside; dx padded by 2), and 'same' 26x26 (13 x 13 tiles,
    # 8 rows an item: 8 + 5 rows of image 0, then rows across images 0 and 1)
    ConvCase("winograd-c64-k64-valid-odd", (5, 64, 22, 23), (64, 64, 3, 3)),
    ConvCase("winograd-c64-k64-26x26-bands", (4, 64, 26, 26), (64, 64, 3, 3), padding=1, bias=False),
    ConvCase("kernel-covers-image", (2, 3, 7, 7), (4, 3, 7, 7)),
    ConvCase("pad-beyond-kernel", (1, 2, 3, 3), (3, 2, 3, 3), padding=3),
    # padded stride-1 convs with 8+ channels: the cpp backend's indirect GEMMs over a padded copy of x
    ConvCase("same-even-4x2-c8", (2, 8, 9, 10), (5, 8, 4, 2), padding="same"),
    ConvCase("pad-beyond-kernel-c8", (1, 8, 3, 3), (17, 8, 3, 3), padding=3),
    ConvCase("pad-pair-c12-k33", (3, 12, 7, 11), (33, 12, 3, 5), padding=(2, 1)),
    # reductions of at most 32 taps (Cg*R*S): the numba backend's direct forward loops, stride 1 and strided
    ConvCase("c1-5x5-same-w19", (3, 1, 11, 19), (5, 1, 5, 5), padding="same"),
    ConvCase("taps32-pad1", (2, 2, 7, 9), (3, 2, 4, 4), padding=1),
    ConvCase(
        "depthwise-c13-s2-dil2", (2, 13, 11, 10), (13, 1, 3, 3), stride=2, padding=2, dilation=2, groups=13
    ),
    ConvCase("groups2-taps32-k10", (2, 4, 7, 9), (10, 2, 4, 4), padding=1, groups=2),
    ConvCase("groups3-stride-1x2", (2, 6, 9, 13), (9, 2, 3, 3), stride=(1, 2), padding=(1, 0), groups=3),
]

POOL_CASES = [
    PoolCase("2x2", (2, 3, 8, 8), 2),
    PoolCase("2x2-odd-7x9", (1, 7, 7, 9), 2),
    PoolCase("2x2-rows-of-8-and-3", (1, 3, 6, 38), 2),  # the SIMD 2x2 path: 8 + 8 + a masked tail of 3
    PoolCase("2x2-classic-26", (2, 5, 26, 27), 2),  # 8 + masked 5 per row, and a cut last column
    PoolCase("3x3-s2-overlap", (2, 8, 15, 16), 3, stride=2),
    PoolCase("3x3-s1-pad1", (1, 9, 9, 17), 3, stride=1, padding=1),
    PoolCase("3x3-s2-pad1-ceil", (2, 3, 16, 15), 3, stride=2, padding=1, ceil_mode=True),
    PoolCase("2x2-ceil-odd", (3, 16, 7, 7), 2, ceil_mode=True),
    PoolCase("2x2-ceil-odd-rows", (2, 3, 7, 16), 2, ceil_mode=True),  # whole columns, a cut last row
    PoolCase("nonsquare-2x3-s-pair", (1, 17, 9, 33), (2, 3), stride=(1, 2), padding=(1, 1)),
    PoolCase("pad1-exclude-pad", (2, 3, 8, 9), 3, stride=2, padding=1, count_include_pad=False),
    PoolCase(
        "ceil-exclude-pad", (1, 15, 9, 9), 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False
    ),
    PoolCase("dilation2", (2, 3, 15, 15), 3, stride=2, padding=1, dilation=2),
    PoolCase("global-7x7", (2, 33, 7, 7), 7),
    # the cpp SIMD average pool: four windows at a time, tails of 1-3 windows and planes, clipped edge windows
    PoolCase("2x2-w23-c7", (2, 7, 6, 23), 2),
    PoolCase("global-5x16-planes-15", (3, 5, 5, 16), (5, 16)),
    PoolCase("3x3-s2-pad1-w33", (1, 6, 9, 33), 3, stride=2, padding=1, count_include_pad=False),
    PoolCase("width1", (2, 3, 9, 1), (3, 1), stride=(2, 1)),
    PoolCase("1x1-kernel-stride2", (1, 8, 9, 9), 1, stride=2),
]

BATCHNORM_CASES = [
    BatchNormCase("n1-c3-5x5", (1, 3, 5, 5)),
    BatchNormCase("n2-c1-1x1", (2, 1, 1, 1)),
    BatchNormCase("n3-c8-3x3", (3, 8, 3, 3), momentum=0.3),
    BatchNormCase("n2-c16-9x9", (2, 16, 9, 9)),
    BatchNormCase("n2-c17-7x15", (2, 17, 7, 15), eps=1e-3, momentum=0.01),
    BatchNormCase("n3-c33-1x9", (3, 33, 1, 9)),
    BatchNormCase("offset1000-n512", (2, 4, 16, 16), offset=1000.0),
    BatchNormCase("scale1e3-momentum1", (2, 7, 8, 8), scale=1e3, momentum=1.0),
    BatchNormCase("momentum0", (1, 9, 4, 4), momentum=0.0),
]

DENSE_CASES = [
    DenseCase("1x1x1", 1, 1, 1),
    DenseCase("n2-in3-out7", 2, 3, 7),
    DenseCase("n3-in8-out9", 3, 8, 9),
    DenseCase("n1-in15-out16", 1, 15, 16),
    DenseCase("n2-in17-out33", 2, 17, 33),
    DenseCase("n33-in16-out8", 33, 16, 8),
    DenseCase("n7-in33-out1-nobias", 7, 33, 1, bias=False),
    DenseCase("n32-in1600-out128-nobias", 32, 1600, 128, bias=False),
    DenseCase("n9-in128-out10", 9, 128, 10),
    # the dot-product forward (gemm_nt): row and column blocks of 48 x 64 with 2 and 3 left over, 3 x 4 tiles
    # with tails, a k block of 512 plus 8, split over the threads
    DenseCase("n50-in520-out67", 50, 520, 67),
    # from 64 rows and 256 outputs the packed GEMM: row panels, column slivers and k with tails
    DenseCase("n67-in130-out263", 67, 130, 263),
    # batch 1 runs a matrix-vector product: 4-row groups and leftover rows, k in 16s, an 8 and a tail; the
    # second is large enough for its rows to be split over threads
    DenseCase("n1-in33-out7", 1, 33, 7),
    DenseCase("n1-in1100-out37", 1, 1100, 37),
]

LOSS_CASES = [
    LossCase("n1-c1", 1, 1),
    LossCase("n2-c10", 2, 10),
    LossCase("n3-c7-labels-first", 3, 7, labels="first"),
    LossCase("n9-c16-labels-last", 9, 16, labels="last"),
    LossCase("n17-c33-labels-ends", 17, 33, labels="ends"),
    LossCase("n8-c10-logits-1000s", 8, 10, scale=3000.0),
    LossCase("n15-c3-logits-1e4", 15, 3, scale=1e4, labels="ends"),
]

_SPECIALS = (
    np.nan,
    np.inf,
    -np.inf,
    0.0,
    1e30,
    -1e30,
    88.0,
    -88.0,
    89.0,
    -89.0,
    1e4,
    -1e4,
    20.0,
    -20.0,
    1e-30,
    -1e-30,
)
ACTIVATION_CASES = [
    ActivationCase("len1", (1,)),
    ActivationCase("len7", (7,)),
    ActivationCase("len8", (8,)),
    ActivationCase("len9", (9,)),
    ActivationCase("4d-2x3x5x7", (2, 3, 5, 7)),
    ActivationCase("2d-17x33", (17, 33)),
    ActivationCase("specials-33", (33,), specials=_SPECIALS),
    ActivationCase("specials-4d-16", (1, 2, 4, 2), specials=_SPECIALS),
]


def from_bench(layer, batch_tag=""):
    """The conformance case for one of :mod:`cnnkern.bench.shapes`'s layers (None for an optimizer step)."""
    from cnnkern.bench import shapes as bench

    name = f"{layer.name}{batch_tag}"
    if isinstance(layer, bench.Conv):
        return ConvCase(name, (layer.n, layer.c, layer.h, layer.w), (layer.k, layer.c, layer.r, layer.s),
                        padding=layer.pad)  # fmt: skip
    if isinstance(layer, bench.Pool):
        return PoolCase(name, (layer.n, layer.c, layer.h, layer.w), layer.k)
    if isinstance(layer, bench.Dense):
        return DenseCase(name, layer.n, layer.fin, layer.fout)
    if isinstance(layer, bench.Loss):
        return LossCase(name, layer.n, layer.classes)
    if isinstance(layer, bench.Elementwise):
        return ActivationCase(name, layer.shape)
    if isinstance(layer, bench.BatchNorm):
        return BatchNormCase(name, (layer.n, layer.c, layer.h, layer.w))
    return None


def _bench_cases():
    from cnnkern.bench import shapes as bench

    layers = {}
    for batch in (32, 128):
        for layer in bench.classic_layers(batch).values():
            case = from_bench(layer, f"-b{batch}")
            if case is not None:
                layers[case.id] = case
    return layers, {k: from_bench(v) for k, v in bench.resnet_convs().items()}


# The classic CNN's layers at batch 32 and 128 and two ResNet-like convolutions: the benchmark shapes of
# cnnkern.bench.shapes (the one place they are defined), as conformance cases.
CNN_LAYERS, RESNET_CONVS = _bench_cases()
# The batch-32 layers join the conformance cases (the benchmarks check the larger ones before timing them).
_B32 = [c for k, c in CNN_LAYERS.items() if k.endswith("-b32")]
CONV_CASES += [c for c in _B32 if isinstance(c, ConvCase)]
POOL_CASES += [c for c in _B32 if isinstance(c, PoolCase)]
DENSE_CASES += [c for c in _B32 if isinstance(c, DenseCase)]
LOSS_CASES += [c for c in _B32 if isinstance(c, LossCase)]


def frontdoor_arguments():
    """One valid set of arguments for every kernel, float64 (labels and argmax int64), for the front-door
    tests: conv x (2,3,6,6), w (4,3,3,3) with padding 1; pool dy for a 2x2 pool; dense x (5,7), w (4,7);
    4 classes."""
    from cnnkern import ops

    x = randn((2, 3, 6, 6), 1)
    _, arg = ops.maxpool2d_forward(x, kernel_size=2, backend="reference")
    return {
        "x": x, "w": randn((4, 3, 3, 3), 2), "b": randn((4,), 3), "dy": randn((2, 4, 6, 6), 4),
        "pdy": randn((2, 3, 3, 3), 5), "arg": arg,
        "gamma": randn((3,), 6), "beta": randn((3,), 7),
        "rm": randn((3,), 8), "rv": 1 + np.abs(randn((3,), 9)),
        "xd": randn((5, 7), 10), "wd": randn((4, 7), 11), "bd": randn((4,), 12), "dyd": randn((5, 4), 13),
        "logits": randn((5, 4), 14), "labels": np.array([0, 3, 1, 2, 3]),
        "param": randn((10,), 15), "grad": randn((10,), 16), "vel": np.zeros(10), "m": np.zeros(10),
        "v": np.zeros(10),
    }  # fmt: skip
