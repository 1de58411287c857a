"""The int8 inference kernels (family ``quant``, :mod:`cnnkern.compress`): 7-bit ``U8`` activation codes,
``I8`` weights, ``I32`` bias and requantization constants; images channels-last (N,H,W,C). The format and
the exact results are specified by :mod:`cnnkern.backends.reference.quant`.

They are not Backend methods: they take and return NumPy integer arrays on every backend (the int8 model
runs on the host; the CUDA kernels move each call's arrays), not arrays of the backend's floating dtype,
and no layer trains through them. Their front door is :class:`cnnkern.compress.kernels.QuantKernels`,
generated from these entries, which makes the shared checks; each backend module then holds only its
kernels, with these signatures (``tests/test_kernel_table.py`` checks them, and the cpp bindings')."""

from __future__ import annotations

from .entry import CONV, PAIR, Kernel, a, k

LAYER = (
    a("w", "I8", doc="weights in [-127, 127], one scale per output channel"),
    a("bias", "I32", doc="one per output channel, in accumulator units, |bias| <= 2**30"),
)
EPILOGUE_ARRAYS = (
    a("multiplier", "I32", doc="one fixed-point factor per output channel: 0 or in [2**30, 2**31)"),
    a("shift", "I32", doc="one per output channel, in [1, 62]"),
)
X_ZERO = (k("x_zero", "int", doc="the input's zero point, in [0, 127]"),)
EPILOGUE = (
    k("y_zero", "int", doc="the output's zero point, in [0, 127]"),
    k("relu", "bool", doc="clamp below at y_zero"),
)
REQUANT = "y = clamp(y_zero + round(acc * multiplier / 2**shift), y_zero if relu else 0, 127) per channel"

POOL = k("pool", PAIR, doc="(ph, pw): the max pool's window and stride (floor mode, no padding)")

QUANT: tuple[Kernel, ...] = (
    Kernel(
        "conv2d_q8_forward",
        "quant",
        (
            a("x", "U8", doc="(N,H,W,C) 7-bit codes"),
            *LAYER,
            *EPILOGUE_ARRAYS,
            *X_ZERO,
            *EPILOGUE,
            *CONV,
        ),
        "y uint8 (N,P,Q,K) 7-bit codes",
        f"Quantized convolution (w (K,C/groups,R,S); padding holds x_zero), fused epilogue: {REQUANT}.",
        returns_type="U8",
        has_front_door=False,
    ),
    Kernel(
        "conv2d_q8_pool_forward",
        "quant",
        (
            a("x", "U8", doc="(N,H,W,C) 7-bit codes"),
            *LAYER,
            *EPILOGUE_ARRAYS,
            *X_ZERO,
            *EPILOGUE,
            *CONV,
            POOL,
        ),
        "y uint8 (N,P//ph,Q//pw,K) 7-bit codes",
        "conv2d_q8_forward, then maxpool2d_q8_forward with kernel_size = stride = pool: the same codes (the "
        "epilogue is monotone, so the max commutes with it; cpp takes it on the accumulators, unwritten).",
        returns_type="U8",
        has_front_door=False,
    ),
    Kernel(
        "dense_q8_forward",
        "quant",
        (a("x", "U8", doc="(N,in) 7-bit codes"), *LAYER, *EPILOGUE_ARRAYS, *X_ZERO, *EPILOGUE),
        "y uint8 (N,out) 7-bit codes",
        f"Quantized dense layer (w (out,in)) with the fused epilogue: {REQUANT}.",
        returns_type="U8",
        has_front_door=False,
    ),
    Kernel(
        "dense_q8_acc",
        "quant",
        (a("x", "U8", doc="(N,in) 7-bit codes"), *LAYER, *X_ZERO),
        "acc int32 (N,out) = bias + (x - x_zero) w^T, exact",
        "The int32 accumulators of the quantized dense layer (the float logits' layer).",
        returns_type="I32",
        has_front_door=False,
    ),
    Kernel(
        "maxpool2d_q8_forward",
        "quant",
        (
            a("x", "U8", doc="(N,H,W,C) 7-bit codes"),
            k("kernel_size", PAIR, doc="(kh, kw)"),
            k("stride", PAIR, doc="(sh, sw)"),
            k("padding", PAIR, doc="(ph, pw), each <= k // 2; padding lies below every code"),
            k("ceil_mode", "bool"),
        ),
        "y uint8 (N,P,Q,C)",
        "Max pooling of 7-bit codes (max commutes with the monotone dequantization).",
        returns_type="U8",
        has_front_door=False,
    ),
    Kernel(
        "quantize_input_q8",
        "quant",
        (
            a("x", "F32", doc="float32 inputs, any shape, finite (the model checks them first)"),
            k("scale", "float", doc="> 0"),
            k("zero", "int", doc="in [0, 127]"),
        ),
        "codes uint8, x's shape",
        "The input's 7-bit codes: clip(rint(x / scale) + zero, 0, 127), rint half to even in float64 "
        "(as PyTorch's quantize_per_tensor).",
        returns_type="U8",
        has_front_door=False,
    ),
)
