"""Learning-rate schedules as Keras's ``keras.optimizers.schedules``: objects called with the step count
(the optimizer's ``iterations``, the steps taken before the current one) that return the learning rate,
accepted as ``learning_rate=`` by every optimizer of :mod:`cnnkern.optimizers`.

* :class:`ExponentialDecay`: ``lr0 · rate^(step / decay_steps)`` (the exponent floored with staircase);
* :class:`PiecewiseConstantDecay`: step decay, ``values[i]`` while ``boundaries[i-1] < step <=
  boundaries[i]``;
* :class:`CosineDecay`: cosine decay to ``alpha · lr``, after an optional linear warm-up (Keras 3's form);
* :class:`OneCycle`: PyTorch's ``OneCycleLR`` (cosine warm-up to ``max_lr``, cosine annealing down).

Each is a pure function of the step, computed in float64; its :meth:`~LearningRateSchedule.get_config`
goes into the model file, and :func:`deserialize` reads it back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "CosineDecay",
    "ExponentialDecay",
    "LearningRateSchedule",
    "OneCycle",
    "PiecewiseConstantDecay",
    "deserialize",
]


def _number(name: str, v: Any, **limits: float) -> float:
    from .ops import check

    return check.number(name, v, finite=True, **limits)


def _steps(name: str, v: Any, minimum: int = 1) -> int:
    from .ops import check

    return check.integer(name, v, minimum=minimum, maximum=None)


class LearningRateSchedule:
    """Base: ``schedule(step) -> learning rate``. Subclass and define ``__call__`` and ``get_config`` (a
    schedule of your own works in training; only the built-in ones are read back from a model file)."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def serialize(self) -> dict[str, Any]:
        """``{"class_name": ..., "config": get_config()}``, as an optimizer's config holds it."""
        return {"class_name": type(self).__name__, "config": self.get_config()}


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate · decay_rate^(step / decay_steps)``; with ``staircase`` the exponent is
    floored (the rate drops every decay_steps steps)."""

    def __init__(
        self, initial_learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False
    ) -> None:
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate, above=0.0)
        self.decay_steps = _steps("decay_steps", decay_steps)
        self.decay_rate = _number("decay_rate", decay_rate, above=0.0)
        self.staircase = bool(staircase)

    def __call__(self, step: int) -> float:
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate**p

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
        }


class PiecewiseConstantDecay(LearningRateSchedule):
    """Step decay: ``values[0]`` for ``step <= boundaries[0]``, ``values[i]`` for ``boundaries[i-1] < step <=
    boundaries[i]``, ``values[-1]`` after the last boundary (Keras's convention). ``boundaries``
    increasing, one value more than boundaries."""

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]) -> None:
        self.boundaries = [_steps(f"boundaries[{i}]", b, minimum=0) for i, b in enumerate(boundaries)]
        self.values = [_number(f"values[{i}]", v, above=0.0) for i, v in enumerate(values)]
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError(
                f"values must have one element more than boundaries, got {len(self.values)} values and "
                f"{len(self.boundaries)} boundaries"
            )
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"boundaries must be strictly increasing, got {self.boundaries}")

    def __call__(self, step: int) -> float:
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return v
        return self.values[-1]

    def get_config(self) -> dict[str, Any]:
        return {"boundaries": list(self.boundaries), "values": list(self.values)}


class CosineDecay(LearningRateSchedule):
    """Keras 3's cosine decay with optional linear warm-up. Without ``warmup_target``: ``lr0 · ((1 − alpha) ·
    (1 + cos(π · min(step, decay_steps) / decay_steps)) / 2 + alpha)``. With it: the rate rises linearly from
    ``initial_learning_rate`` to ``warmup_target`` over ``warmup_steps``, then decays from ``warmup_target``
    as above over ``decay_steps``."""

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        alpha: float = 0.0,
        warmup_target: float | None = None,
        warmup_steps: int = 0,
    ) -> None:
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate, minimum=0.0)
        self.decay_steps = _steps("decay_steps", decay_steps)
        self.alpha = _number("alpha", alpha, minimum=0.0, maximum=1.0)
        self.warmup_target = (
            None if warmup_target is None else _number("warmup_target", warmup_target, above=0.0)
        )
        self.warmup_steps = _steps("warmup_steps", warmup_steps, minimum=0)
        if self.warmup_target is None and self.initial_learning_rate == 0.0:
            raise ValueError("initial_learning_rate must be > 0 without warmup_target")

    def _decay(self, step: float, lr: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return lr * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step: int) -> float:
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return delta * (step / self.warmup_steps) + self.initial_learning_rate
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
        }


class OneCycle(LearningRateSchedule):
    """PyTorch's ``OneCycleLR`` (two phases, cosine annealing; no momentum cycling): from ``max_lr /
    div_factor`` up to ``max_lr`` at step ``pct_start · total_steps − 1``, then down to ``max_lr /
    (div_factor · final_div_factor)`` at step ``total_steps − 1``, and held there after."""

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ) -> None:
        self.max_lr = _number("max_lr", max_lr, above=0.0)
        self.total_steps = _steps("total_steps", total_steps, minimum=2)
        self.pct_start = _number("pct_start", pct_start, above=0.0, below=1.0)
        self.div_factor = _number("div_factor", div_factor, above=0.0)
        self.final_div_factor = _number("final_div_factor", final_div_factor, above=0.0)
        self._peak = self.pct_start * self.total_steps - 1.0
        if not 0.0 < self._peak < self.total_steps - 1:
            raise ValueError(
                f"pct_start * total_steps - 1 must lie in (0, total_steps - 1), got {self._peak} "
                f"(pct_start={pct_start}, total_steps={total_steps})"
            )

    def __call__(self, step: int) -> float:
        start = self.max_lr / self.div_factor
        end = start / self.final_div_factor
        step = min(step, self.total_steps - 1)
        if step <= self._peak:
            lo, hi, pct = start, self.max_lr, step / self._peak
        else:
            lo, hi, pct = self.max_lr, end, (step - self._peak) / (self.total_steps - 1 - self._peak)
        return hi + (lo - hi) / 2.0 * (math.cos(math.pi * pct) + 1.0)

    def get_config(self) -> dict[str, Any]:
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }


_BUILT_IN: dict[str, type[LearningRateSchedule]] = {
    cls.__name__: cls for cls in (ExponentialDecay, PiecewiseConstantDecay, CosineDecay, OneCycle)
}


def deserialize(config: dict[str, Any]) -> LearningRateSchedule:
    """The schedule from :meth:`LearningRateSchedule.serialize`'s dict (built-in schedules only)."""
    name = config.get("class_name") if isinstance(config, dict) else None
    if name not in _BUILT_IN or not isinstance(config.get("config"), dict):
        raise ValueError(
            f"a learning-rate schedule config must be {{'class_name': one of {sorted(_BUILT_IN)}, "
            f"'config': {{...}}}}, got {config!r}"
        )
    return _BUILT_IN[name](**config["config"])
