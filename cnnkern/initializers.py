"""Weight initializers with Keras's names and definitions, drawn from one ``numpy.random.Generator``.

Each takes ``(shape, fan_in, fan_out, rng)`` and returns a float64 NumPy array; the layer casts it to the
model's dtype and moves it to the backend. Fans: conv weight (K, C, R, S) has fan_in = C·R·S and
fan_out = K·R·S; dense weight (out, in) has fan_in = in, fan_out = out.

* ``glorot_uniform`` (Keras's default): U(−l, l), l = sqrt(6 / (fan_in + fan_out)).
* ``glorot_normal``: truncated normal, std sqrt(2 / (fan_in + fan_out)).
* ``he_uniform``: U(−l, l), l = sqrt(6 / fan_in) (PyTorch's kaiming_uniform_ with the ReLU gain).
* ``he_normal``: truncated normal, std sqrt(2 / fan_in).
* ``zeros``, ``ones``.

Truncated normals follow Keras: values beyond two standard deviations are redrawn, and the std is divided
by 0.87962566103423978 (the std of a unit normal truncated at ±2) so the result has the intended variance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from numpy.typing import NDArray

from ._typing import Shape

if TYPE_CHECKING:
    from typing_extensions import TypeAlias

Initializer: TypeAlias = Callable[[Shape, int, int, np.random.Generator], "NDArray[Any]"]
"""``(shape, fan_in, fan_out, rng) -> array``: what every initializer (and a custom callable) is."""

_TRUNC_STD = 0.87962566103423978


def _truncated_normal(shape: Shape, std: float, rng: np.random.Generator) -> NDArray[np.float64]:
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * (std / _TRUNC_STD)


def glorot_uniform(shape: Shape, fan_in: int, fan_out: int, rng: np.random.Generator) -> NDArray[np.float64]:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape)


def glorot_normal(shape: Shape, fan_in: int, fan_out: int, rng: np.random.Generator) -> NDArray[np.float64]:
    return _truncated_normal(shape, np.sqrt(2.0 / (fan_in + fan_out)), rng)


def he_uniform(shape: Shape, fan_in: int, fan_out: int, rng: np.random.Generator) -> NDArray[np.float64]:
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, shape)


def he_normal(shape: Shape, fan_in: int, fan_out: int, rng: np.random.Generator) -> NDArray[np.float64]:
    return _truncated_normal(shape, np.sqrt(2.0 / fan_in), rng)


def zeros(shape: Shape, fan_in: int, fan_out: int, rng: np.random.Generator) -> NDArray[np.float64]:
    return np.zeros(shape)


def ones(shape: Shape, fan_in: int, fan_out: int, rng: np.random.Generator) -> NDArray[np.float64]:
    return np.ones(shape)


_BY_NAME: dict[str, Initializer] = {
    f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, zeros, ones)
}


def get(name: str | Initializer) -> Initializer:
    """The initializer called ``name``; a callable with the same signature is returned as is."""
    if callable(name):
        return name
    if name not in _BY_NAME:
        raise ValueError(f"initializer must be one of {', '.join(_BY_NAME)} or a callable, got {name!r}")
    return _BY_NAME[name]


def name_of(init: Initializer) -> str:
    """The name to store in a saved architecture (custom callables cannot be saved by name)."""
    for name, f in _BY_NAME.items():
        if f is init:
            return name
    raise ValueError(f"cannot save a model built with the custom initializer {init!r}; use a named one")
