"""Choosing the int8 model's numbers from float ones: activation ranges from calibration (min-max or a
percentile), per-channel weight scales, integer biases and the fixed-point requantization multipliers.
The integer formats are specified in :mod:`cnnkern.backends.reference.quant`."""

from __future__ import annotations

import math

import numpy as np

from ..backends.reference.quant import ACT_MAX, MAX_BIAS, W_MAX, quantize_input_q8

# values kept per observed batch for a percentile (a strided sample beyond this: the tails of a large
# activation are still seen in proportion)
_SAMPLE = 1 << 18


class RangeObserver:
    """The range of one activation tensor over the calibration batches: ``'minmax'`` (the extremes) or
    ``'percentile'`` (the ``percentile`` and ``100 - percentile`` points, clipping outliers)."""

    def __init__(self, method: str, percentile: float) -> None:
        self.method, self.percentile = method, percentile
        self.lo, self.hi = math.inf, -math.inf
        self.samples: list[np.ndarray] = []

    def observe(self, a: np.ndarray) -> None:
        flat = np.asarray(a, np.float64).ravel()
        if flat.size == 0:
            return
        if self.method == "minmax":
            self.lo, self.hi = min(self.lo, float(flat.min())), max(self.hi, float(flat.max()))
        else:
            self.samples.append(flat[:: max(1, flat.size // _SAMPLE)])

    def range(self) -> tuple[float, float]:
        if self.method == "percentile" and self.samples:
            values = np.concatenate(self.samples)
            return float(np.percentile(values, 100 - self.percentile)), float(
                np.percentile(values, self.percentile)
            )
        return (self.lo, self.hi) if self.lo <= self.hi else (0.0, 0.0)


def activation_qparams(lo: float, hi: float) -> tuple[float, int]:
    """(scale, zero) of 7-bit codes covering [lo, hi] widened to hold 0 (zero padding must be exact)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / ACT_MAX if hi > lo else 1.0
    zero = int(np.clip(round(-lo / scale), 0, ACT_MAX))
    return scale, zero


def quantize_input(x: np.ndarray, scale: float, zero: int) -> np.ndarray:
    """Float input -> 7-bit codes (round half to even, as PyTorch's quantize_per_tensor): the reference's
    quantize_input_q8, the specification of every backend's."""
    return quantize_input_q8(x, scale=scale, zero=zero)


def quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weights in [-127, 127], per-output-channel scales (float64)): symmetric, max |w| -> 127."""
    w = np.asarray(w, np.float64)
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    scale = np.where(amax > 0, amax / W_MAX, 1.0)
    q = np.clip(np.rint(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -W_MAX, W_MAX)
    return q.astype(np.int8), scale


def quantize_bias(b: np.ndarray | None, acc_scale: np.ndarray) -> np.ndarray:
    """The bias in accumulator units (scale x_scale * w_scale[k]), int32 within +-2**30."""
    if b is None:
        return np.zeros(acc_scale.shape, np.int32)
    return np.clip(np.rint(np.asarray(b, np.float64) / acc_scale), -MAX_BIAS, MAX_BIAS).astype(np.int32)


def fixed_point(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(multiplier, shift) int32 with multiplier * 2**-shift ~ real (>= 0), multiplier in [2**30, 2**31)
    (or 0 for a factor below 2**-31), shift in [1, 62]."""
    m_out = np.zeros(real.shape, np.int32)
    s_out = np.ones(real.shape, np.int32)
    for i, r in enumerate(np.asarray(real, np.float64)):
        if not r > 0:
            continue
        f, e = math.frexp(float(r))  # r = f * 2**e, f in [0.5, 1)
        m, s = round(f * (1 << 31)), 31 - e
        if m == 1 << 31:
            m, s = 1 << 30, s - 1
        if s > 62:
            continue  # below 2**-31: every accumulator rounds to 0
        if s < 1:
            raise ValueError(f"a requantization factor of {r:g} is too large (> 2**30)")
        m_out[i], s_out[i] = m, s
    return m_out, s_out
