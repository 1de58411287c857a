"""What a saved model's architecture may hold (:mod:`cnnkern._modelfile` reads it as untrusted input): the
size limits, the checks of one JSON value each, and :data:`SCHEMA`, every layer class's required and allowed
config keys with the check of each value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import layers as layers_mod

Check = Callable[[Any], None]
"""A check of one JSON value: returns if it is valid, raises :class:`_Bad` saying what was expected if not."""

ARCHITECTURE = "__architecture__"
MAX_LAYERS = 10_000
MAX_DIM = 1 << 20  # any one size in the architecture (units, filters, image side...)
MAX_KERNEL = 1 << 12  # kernel, pool, stride and dilation sizes
MAX_ACTIVATION = 1 << 28  # elements of one sample's activation after any layer (1 GiB of float32)
MAX_PARAMS = 1 << 30  # weight elements in all (4 GiB of float32)
MAX_ARCHITECTURE_CHARS = 1 << 24


class _Bad(ValueError):
    pass


def _int(v: Any, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _Bad(f"an int in [{lo}, {hi}]")


def _pair(v: Any, lo: int = 1, hi: int = MAX_KERNEL) -> None:
    if isinstance(v, list) and len(v) == 2:
        for i in v:
            _int(i, lo, hi)
        return
    try:
        _int(v, lo, hi)
    except _Bad:
        raise _Bad(f"an int in [{lo}, {hi}] or a list of two") from None


def _choice(*options: Any) -> Check:
    def check(v: Any) -> None:
        if v not in options:
            raise _Bad(f"one of {', '.join(repr(o) for o in options)}")

    return check


def _float(lo: float, hi: float, lo_open: bool = False) -> Check:
    def check(v: Any) -> None:
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or not (lo < v if lo_open else lo <= v)
            or v > hi
        ):
            raise _Bad(f"a number in {'(' if lo_open else '['}{lo}, {hi}]")

    return check


def _bool(v: Any) -> None:
    if not isinstance(v, bool):
        raise _Bad("true or false")


def _name(v: Any) -> None:
    if not isinstance(v, str) or not v or len(v) > 256 or "/" in v:
        raise _Bad("a non-empty string of at most 256 characters without '/'")


def _input_shape(v: Any) -> None:
    if not isinstance(v, list) or len(v) not in (1, 3):
        raise _Bad("a list [H, W, C] or [features]")
    for d in v:
        _int(d, 1, MAX_DIM)


def _paddings(v: Any) -> None:
    """ZeroPadding2D's padding: an int, a list of two, or [[top, bottom], [left, right]]."""
    try:
        _pair(v, 0, MAX_DIM)
        return
    except _Bad:
        pass
    if not isinstance(v, list) or len(v) != 2:
        raise _Bad(f"an int in [0, {MAX_DIM}], a list of two or [[top, bottom], [left, right]]")
    for p in v:
        _pair(p, 0, MAX_DIM)
        if not isinstance(p, list):
            raise _Bad("[[top, bottom], [left, right]]")


def _target_shape(v: Any) -> None:
    if not isinstance(v, list) or len(v) not in (1, 3):
        raise _Bad("a list [H, W, C] or [features] (one may be -1)")
    for d in v:
        if d != -1:
            _int(d, 1, MAX_DIM)


_DATA_FORMAT = _choice(None, "channels_last", "channels_first")
_INITIALIZERS = _choice("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "zeros", "ones")
_ACTIVATION = _choice(*layers_mod.ACTIVATIONS, None)
_COMMON: dict[str, Check] = {"name": _name, "trainable": _bool, "input_shape": _input_shape}
_POOL: dict[str, Check] = {
    "pool_size": _pair,
    "strides": _pair,
    "padding": _choice("valid", "same"),
    "data_format": _DATA_FORMAT,
}
# class -> (required keys, {key: check}) beyond _COMMON; keys are those of each layer's get_config()
# DepthwiseConv2D's settings; SeparableConv2D adds filters and its pointwise conv's initializer
_DEPTHWISE: dict[str, Check] = {
    "kernel_size": _pair,
    "strides": _pair,
    "padding": _choice("valid", "same"),
    "depth_multiplier": lambda v: _int(v, 1, MAX_DIM),
    "dilation_rate": _pair,
    "activation": _ACTIVATION,
    "use_bias": _bool,
    "depthwise_initializer": _INITIALIZERS,
    "bias_initializer": _INITIALIZERS,
    "data_format": _DATA_FORMAT,
}
SCHEMA: dict[str, tuple[tuple[str, ...], dict[str, Check]]] = {
    "Conv2D": (
        ("filters", "kernel_size"),
        {
            "filters": lambda v: _int(v, 1, MAX_DIM),
            "kernel_size": _pair,
            "strides": _pair,
            "padding": _choice("valid", "same"),
            "dilation_rate": _pair,
            "groups": lambda v: _int(v, 1, MAX_DIM),
            "activation": _ACTIVATION,
            "use_bias": _bool,
            "kernel_initializer": _INITIALIZERS,
            "bias_initializer": _INITIALIZERS,
            "data_format": _DATA_FORMAT,
        },
    ),
    "Dense": (
        ("units",),
        {
            "units": lambda v: _int(v, 1, MAX_DIM),
            "activation": _ACTIVATION,
            "use_bias": _bool,
            "kernel_initializer": _INITIALIZERS,
            "bias_initializer": _INITIALIZERS,
        },
    ),
    "MaxPooling2D": ((), _POOL),
    "AveragePooling2D": ((), _POOL),
    "BatchNormalization": (
        (),
        {
            "axis": _choice(-1, 1),
            "momentum": _float(0.0, 1.0),
            "epsilon": _float(0.0, 1e6, lo_open=True),
            "center": _bool,
            "scale": _bool,
            "convention": _choice("torch", "keras"),
        },
    ),
    "Flatten": ((), {}),
    "Activation": (("activation",), {"activation": _ACTIVATION}),
    "ReLU": ((), {}),
    "LeakyReLU": ((), {"negative_slope": _float(0.0, 1e6), "alpha": _float(0.0, 1e6)}),
    "Dropout": (("rate",), {"rate": _float(0.0, 0.999999)}),
    "DepthwiseConv2D": (("kernel_size",), _DEPTHWISE),
    "SeparableConv2D": (
        ("filters", "kernel_size"),
        {
            "filters": lambda v: _int(v, 1, MAX_DIM),
            **_DEPTHWISE,
            "pointwise_initializer": _INITIALIZERS,
        },
    ),
    "ZeroPadding2D": ((), {"padding": _paddings, "data_format": _DATA_FORMAT}),
    "Reshape": (("target_shape",), {"target_shape": _target_shape}),
    "Rescaling": (("scale",), {"scale": _float(-1e30, 1e30), "offset": _float(-1e30, 1e30)}),
    "InputLayer": (("shape",), {"shape": _input_shape}),
    "Add": ((), {}),
    "Concatenate": ((), {"axis": lambda v: _int(v, -1, 3)}),
    "GlobalAveragePooling2D": ((), {"keepdims": _bool, "data_format": _choice(None, "channels_last")}),
    "GlobalMaxPooling2D": ((), {"keepdims": _bool, "data_format": _choice(None, "channels_last")}),
}


# the preprocessing layers (layers/preprocessing.py); their constructors check the values further
def _seed(v: Any) -> None:
    if v is not None:
        _int(v, 0, 2**63 - 1)


def _factor(v: Any) -> None:
    if isinstance(v, list) and len(v) == 2:
        for f in v:
            _float(-1e3, 1e3)(f)
        return
    try:
        _float(-1e3, 1e3)(v)
    except _Bad:
        raise _Bad("a number in [-1000, 1000] or a list of two") from None


def _optional_factor(v: Any) -> None:
    if v is not None:
        _factor(v)


_FILL: dict[str, Check] = {
    "fill_mode": _choice("constant"),
    "interpolation": _choice("bilinear", "nearest"),
    "fill_value": _float(-1e30, 1e30),
}
SCHEMA.update(
    {
        "RandomFlip": (
            (),
            {"seed": _seed, "mode": _choice("horizontal", "vertical", "horizontal_and_vertical")},
        ),
        "RandomTranslation": (
            ("height_factor", "width_factor"),
            {"seed": _seed, "height_factor": _factor, "width_factor": _factor, **_FILL},
        ),
        "RandomCrop": (
            ("height", "width"),
            {"seed": _seed, "height": lambda v: _int(v, 1, MAX_DIM), "width": lambda v: _int(v, 1, MAX_DIM)},
        ),
        "RandomErasing": (
            (),
            {"seed": _seed, "factor": _float(0.0, 1.0), "scale": _factor, "fill_value": _choice(0.0)},
        ),
        "RandomRotation": (("factor",), {"seed": _seed, "factor": _factor, **_FILL}),
        "RandomZoom": (
            ("height_factor",),
            {
                "seed": _seed,
                "height_factor": _factor,
                "width_factor": _optional_factor,
                **_FILL,
            },
        ),
        "RandomContrast": (("factor",), {"seed": _seed, "factor": _factor, "value_range": _factor}),
        "RandomBrightness": (("factor",), {"seed": _seed, "factor": _factor, "value_range": _factor}),
    }
)
assert set(SCHEMA) == set(layers_mod.LAYERS), "every layer class needs a schema"
