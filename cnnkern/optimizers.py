"""Optimizers with Keras's names and defaults, stepping through :func:`cnnkern.ops.adam_update_multi` (Adam:
one call per step for all parameters) and :func:`cnnkern.ops.sgd_update` (in place, one call per parameter).

State (Adam's moments, SGD's velocity) is allocated once per parameter, at its first update, on the model's
backend. ``iterations`` counts the steps taken (Adam's bias correction uses it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._typing import BackendArray

if TYPE_CHECKING:
    from typing_extensions import TypeAlias

    from .backends import Backend
    from .layers import Context

    SlotKey: TypeAlias = tuple[int, str]
    """A parameter's key: (layer index, parameter name), as the training step and checkpoints use it."""

__all__ = ["Adam", "Optimizer", "SGD", "get"]


class Optimizer:
    """Base: a learning rate, per-parameter slots, and :meth:`apply_gradients` for one training step."""

    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = _positive("learning_rate", learning_rate)
        self.iterations = 0
        self._slots: dict[SlotKey, dict[str, BackendArray]] = {}  # parameter key -> {slot name: array}

    def apply_gradients(
        self, params_and_grads: Sequence[tuple[SlotKey, BackendArray, BackendArray]], ctx: Context
    ) -> None:
        """One step: ``params_and_grads`` is a list of ``(key, param, grad)``, updated in place on the
        backend of ``ctx`` (a :class:`cnnkern.layers.Context`)."""
        self.iterations += 1
        for key, param, grad in params_and_grads:
            slots = self._slots.get(key)
            if slots is None:
                slots = self._slots[key] = {name: ctx.xp.zeros_like(param) for name in self.slot_names}
            self._update(param, grad, slots, ctx.backend)

    def _update(
        self, param: BackendArray, grad: BackendArray, slots: dict[str, BackendArray], backend: Backend
    ) -> None:
        raise NotImplementedError

    def to_context(self, ctx: Context) -> None:
        """Move the slots to another backend (after ``Sequential.to_backend``)."""
        for slots in self._slots.values():
            for name, a in slots.items():
                slots[name] = ctx.xp.asarray(a.get() if not isinstance(a, np.ndarray) else a)

    def get_config(self) -> dict[str, Any]:
        return {"class_name": type(self).__name__, "learning_rate": self.learning_rate}

    # --- state, for checkpoints (cnnkern.checkpoint) -------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """``{"iterations": int, "slots": {key: {slot name: NumPy copy}}}``: everything a resumed run needs
        (Adam's m, v and step count; SGD's velocity); the hyperparameters are in :meth:`get_config`."""
        slots = {
            key: {name: (a.get() if not isinstance(a, np.ndarray) else a).copy() for name, a in s.items()}
            for key, s in self._slots.items()
        }
        return {"iterations": int(self.iterations), "slots": slots}

    def set_state(self, state: dict[str, Any], ctx: Context) -> None:
        """Restore what :meth:`get_state` returned, the slots moved to the backend of ``ctx``."""
        self.iterations = int(state["iterations"])
        self._slots = {
            key: {name: ctx.asarray(a) for name, a in s.items()} for key, s in state["slots"].items()
        }


def _positive(name: str, v: float, *, allow_zero: bool = False) -> float:
    """A finite hyperparameter > 0 (>= 0 with allow_zero): the rule of the ops' front door
    (cnnkern.ops.optim), enforced when the optimizer is built rather than at its first step."""
    from .ops import check

    if allow_zero:
        return check.number(name, v, minimum=0.0, finite=True)
    return check.number(name, v, above=0.0, finite=True)


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's form of momentum: ``v = momentum·v + g; p −= lr·v`` (the same
    steps as Keras's ``v = momentum·v − lr·g; p += v`` at a constant learning rate). ``weight_decay`` adds
    ``weight_decay·p`` to the gradient. Defaults are Keras's: learning_rate 0.01, momentum 0."""

    def __init__(
        self,
        learning_rate: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(learning_rate)
        self.momentum = _positive("momentum", momentum, allow_zero=True)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.weight_decay = _positive("weight_decay", weight_decay, allow_zero=True)
        self.slot_names = ("velocity",) if self.momentum > 0.0 else ()

    def _update(
        self, param: BackendArray, grad: BackendArray, slots: dict[str, BackendArray], backend: Backend
    ) -> None:
        from . import ops

        ops.sgd_update(
            param,
            grad,
            slots.get("velocity"),
            lr=self.learning_rate,
            momentum=self.momentum,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
            backend=backend,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }


class Adam(Optimizer):
    """Adam. ``eps_mode='torch'`` (default): PyTorch's form, ``p −= lr/(1−β1ᵗ) · m / (sqrt(v)/sqrt(1−β2ᵗ) +
    ε)`` with ε = 1e-8 by default. ``eps_mode='keras'``: Keras's form, ε added to sqrt(v) before the bias
    correction, with Keras's default ε = 1e-7. ``epsilon`` overrides the mode's default. ``weight_decay``
    is PyTorch's L2 form (added to the gradient). learning_rate 1e-3, beta_1 0.9, beta_2 0.999 as in both."""

    slot_names = ("m", "v")

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float | None = None,
        eps_mode: str = "torch",
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(learning_rate)
        if eps_mode not in ("torch", "keras"):
            raise ValueError(f"eps_mode must be 'torch' or 'keras', got {eps_mode!r}")
        self.eps_mode = eps_mode
        from .ops import check

        self.beta_1 = check.number("beta_1", beta_1, minimum=0.0, below=1.0, finite=True)
        self.beta_2 = check.number("beta_2", beta_2, minimum=0.0, below=1.0, finite=True)
        self.epsilon = _positive(
            "epsilon",
            (1e-7 if eps_mode == "keras" else 1e-8) if epsilon is None else epsilon,
            allow_zero=True,
        )
        self.weight_decay = _positive("weight_decay", weight_decay, allow_zero=True)

    def apply_gradients(
        self, params_and_grads: Sequence[tuple[SlotKey, BackendArray, BackendArray]], ctx: Context
    ) -> None:
        """One step over every parameter in ONE kernel call (:func:`cnnkern.ops.adam_update_multi`; the same
        result as :func:`cnnkern.ops.adam_update` on each parameter, which :meth:`_update` still does)."""
        from . import ops

        self.iterations += 1
        if not params_and_grads:
            return
        params: list[BackendArray] = []
        grads: list[BackendArray] = []
        ms: list[BackendArray] = []
        vs: list[BackendArray] = []
        for key, param, grad in params_and_grads:
            slots = self._slots.get(key)
            if slots is None:
                slots = self._slots[key] = {name: ctx.xp.zeros_like(param) for name in self.slot_names}
            params.append(param)
            grads.append(grad)
            ms.append(slots["m"])
            vs.append(slots["v"])
        ops.adam_update_multi(params, grads, ms, vs, **self._hyper(), backend=ctx.backend)

    def _hyper(self) -> dict[str, Any]:
        """The keywords of ops.adam_update / adam_update_multi for the current step."""
        return dict(
            step=self.iterations,
            lr=self.learning_rate,
            beta1=self.beta_1,
            beta2=self.beta_2,
            eps=self.epsilon,
            weight_decay=self.weight_decay,
            eps_mode=self.eps_mode,
        )

    def _update(
        self, param: BackendArray, grad: BackendArray, slots: dict[str, BackendArray], backend: Backend
    ) -> None:
        from . import ops

        ops.adam_update(param, grad, slots["m"], slots["v"], **self._hyper(), backend=backend)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "eps_mode": self.eps_mode,
            "weight_decay": self.weight_decay,
        }


_BY_NAME: dict[str, type[Adam] | type[SGD]] = {"adam": Adam, "sgd": SGD}


def get(identifier: str | Optimizer | dict[str, Any]) -> Optimizer:
    """An optimizer from a name ('adam', 'sgd': default arguments), a config dict, or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, dict) and identifier.get("class_name") in ("Adam", "SGD"):
        cfg = dict(identifier)
        return {"Adam": Adam, "SGD": SGD}[cfg.pop("class_name")](**cfg)
    raise ValueError(f"optimizer must be 'adam', 'sgd' or an Adam/SGD instance, got {identifier!r}")
