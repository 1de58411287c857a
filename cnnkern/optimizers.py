"""Optimizers with Keras's names and arguments, each step a kernel of :mod:`cnnkern.ops` (PyTorch's numerics):
:class:`SGD` (momentum, Nesterov; :func:`cnnkern.ops.sgd_update`, one call per parameter), :class:`Adam` and
:class:`AdamW` (:func:`cnnkern.ops.adam_update_multi`: one call per step for all parameters) and
:class:`RMSprop` (:func:`cnnkern.ops.rmsprop_update`).

Every optimizer takes Keras's ``learning_rate`` (a float or a
:class:`cnnkern.schedules.LearningRateSchedule`, evaluated at ``iterations``, the steps taken before this
one) and Keras's gradient clipping: ``clipnorm`` (each gradient scaled to an L2 norm of at most clipnorm),
``global_clipnorm`` (all gradients scaled together so that their joint norm is at most it; not with
clipnorm) and ``clipvalue`` (each element clipped to [-clipvalue, clipvalue], after the norm clipping).

State (Adam's moments, SGD's velocity, RMSprop's averages) is allocated once per parameter, at its first
update, on the model's backend. ``iterations`` counts the steps taken (Adam's bias correction uses it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._typing import BackendArray
from .layers.base import weights_changed

if TYPE_CHECKING:
    from typing_extensions import TypeAlias

    from .backends import Backend
    from .layers import Context
    from .schedules import LearningRateSchedule

    SlotKey: TypeAlias = tuple[int, str]
    """A parameter's key: (layer index, parameter name), as the training step and checkpoints use it."""

__all__ = ["Adam", "AdamW", "Optimizer", "RMSprop", "SGD", "get"]

_CLIP_KEYS = ("clipnorm", "clipvalue", "global_clipnorm")


class Optimizer:
    """Base: a learning rate (or schedule), gradient clipping, per-parameter slots, and
    :meth:`apply_gradients` for one training step."""

    slot_names: tuple[str, ...] = ()
    _config_keys: tuple[str, ...] = ()  # a subclass's hyperparameters, attributes of these names

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
    ) -> None:
        from .schedules import LearningRateSchedule

        self._schedule: LearningRateSchedule | None = None
        self._lr = 0.0
        if isinstance(learning_rate, LearningRateSchedule):
            self._schedule = learning_rate
        else:
            self._lr = _positive("learning_rate", learning_rate)
        self._initial_lr = self._lr  # as constructed: callbacks (ReduceLROnPlateau) change _lr only
        if clipnorm is not None and global_clipnorm is not None:
            raise ValueError("clipnorm and global_clipnorm cannot both be set (Keras's rule): pick one")
        self.clipnorm = None if clipnorm is None else _positive("clipnorm", clipnorm)
        self.clipvalue = None if clipvalue is None else _positive("clipvalue", clipvalue)
        self.global_clipnorm = (
            None if global_clipnorm is None else _positive("global_clipnorm", global_clipnorm)
        )
        self.iterations = 0
        self._slots: dict[SlotKey, dict[str, BackendArray]] = {}  # parameter key -> {slot name: array}

    # --- the learning rate -----------------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step: the schedule's value at ``iterations``, or the constant."""
        if self._schedule is not None:
            from .ops import check

            return check.number(
                "learning_rate (from the schedule)", self._schedule(self.iterations), finite=True
            )
        return self._lr

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        if self._schedule is not None:
            raise TypeError(
                "this optimizer's learning_rate is a LearningRateSchedule, so it cannot be set (as in Keras)"
            )
        self._lr = _positive("learning_rate", value)

    @property
    def schedule(self) -> LearningRateSchedule | None:
        """The LearningRateSchedule given as ``learning_rate``, or None."""
        return self._schedule

    # --- a step --------------------------------------------------------------------------------------------
    def apply_gradients(
        self, params_and_grads: Sequence[tuple[SlotKey, BackendArray, BackendArray]], ctx: Context
    ) -> None:
        """One step: ``params_and_grads`` is a list of ``(key, param, grad)``, updated in place on the
        backend of ``ctx`` (a :class:`cnnkern.layers.Context`); the gradients are clipped first (into new
        arrays) when the optimizer clips."""
        lr = self.learning_rate
        items = self._clip(list(params_and_grads), ctx.xp)
        self.iterations += 1
        self._apply(items, ctx, lr)
        weights_changed()  # the parameters were updated in place: the inference plans re-prepare theirs

    def _clip(
        self, items: list[tuple[SlotKey, BackendArray, BackendArray]], xp: Any
    ) -> list[tuple[SlotKey, BackendArray, BackendArray]]:
        """Keras's clipping: g·c / max(‖g‖, c) per gradient (clipnorm) or over all (global_clipnorm), then
        elementwise to [-clipvalue, clipvalue]. Norms are summed in float64."""
        if self.clipnorm is not None:
            c = self.clipnorm
            items = [(k, p, _scaled(g, c / max(_norm(g, xp), c))) for k, p, g in items]
        elif self.global_clipnorm is not None:
            c = self.global_clipnorm
            total = math.sqrt(sum(_norm(g, xp) ** 2 for _, _, g in items))
            items = [(k, p, _scaled(g, c / max(total, c))) for k, p, g in items]
        if self.clipvalue is not None:
            v = self.clipvalue
            items = [(k, p, xp.clip(g, -v, v)) for k, p, g in items]
        return items

    def _slots_of(self, key: SlotKey, param: BackendArray, ctx: Context) -> dict[str, BackendArray]:
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = {name: ctx.xp.zeros_like(param) for name in self.slot_names}
        return slots

    def _apply(
        self, items: list[tuple[SlotKey, BackendArray, BackendArray]], ctx: Context, lr: float
    ) -> None:
        for key, param, grad in items:
            self._update(param, grad, self._slots_of(key, param, ctx), ctx.backend, lr)

    def _update(
        self,
        param: BackendArray,
        grad: BackendArray,
        slots: dict[str, BackendArray],
        backend: Backend,
        lr: float,
    ) -> None:
        raise NotImplementedError

    def to_context(self, ctx: Context) -> None:
        """Move the slots to another backend (after ``Sequential.to_backend``)."""
        for slots in self._slots.values():
            for name, a in slots.items():
                slots[name] = ctx.xp.asarray(a.get() if not isinstance(a, np.ndarray) else a)

    def get_config(self) -> dict[str, Any]:
        lr: Any = self._lr if self._schedule is None else self._schedule.serialize()
        clip = {name: getattr(self, name) for name in _CLIP_KEYS if getattr(self, name) is not None}
        own = {name: getattr(self, name) for name in self._config_keys}
        return {"class_name": type(self).__name__, "learning_rate": lr, **clip, **own}

    # --- state, for checkpoints (cnnkern.checkpoint) -------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """``{"iterations": int, "learning_rate": float, "slots": {key: {slot name: NumPy copy}}}``:
        everything a resumed run needs (Adam's m, v and step count; SGD's velocity; the current learning
        rate, which callbacks may have changed); the hyperparameters are in :meth:`get_config`."""
        slots = {
            key: {name: (a.get() if not isinstance(a, np.ndarray) else a).copy() for name, a in s.items()}
            for key, s in self._slots.items()
        }
        return {"iterations": int(self.iterations), "learning_rate": self._lr, "slots": slots}

    def set_state(self, state: dict[str, Any], ctx: Context) -> None:
        """Restore what :meth:`get_state` returned, the slots moved to the backend of ``ctx``."""
        self.iterations = int(state["iterations"])
        if self._schedule is None and "learning_rate" in state:
            self._lr = _positive("learning_rate", state["learning_rate"])
        self._slots = {
            key: {name: ctx.asarray(a) for name, a in s.items()} for key, s in state["slots"].items()
        }


def _norm(g: BackendArray, xp: Any) -> float:
    """The L2 norm of g, summed in float64."""
    return math.sqrt(float(xp.sum(xp.square(g.astype(xp.float64)))))


def _scaled(g: BackendArray, factor: float) -> BackendArray:
    return g if factor >= 1.0 else g * g.dtype.type(factor)


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

    _config_keys = ("momentum", "nesterov", "weight_decay")

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
    ) -> None:
        super().__init__(learning_rate, clipnorm, clipvalue, global_clipnorm)
        self.momentum = _positive("momentum", momentum, allow_zero=True)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.weight_decay = _positive("weight_decay", weight_decay, allow_zero=True)
        self.slot_names = ("velocity",) if self.momentum > 0.0 else ()

    def _update(
        self,
        param: BackendArray,
        grad: BackendArray,
        slots: dict[str, BackendArray],
        backend: Backend,
        lr: float,
    ) -> None:
        from . import ops

        ops.sgd_update(
            param,
            grad,
            slots.get("velocity"),
            lr=lr,
            momentum=self.momentum,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
            backend=backend,
        )


class Adam(Optimizer):
    """Adam. ``eps_mode='torch'`` (default): PyTorch's form, ``p −= lr/(1−β1ᵗ) · m / (sqrt(v)/sqrt(1−β2ᵗ) +
    ε)`` with ε = 1e-8 by default. ``eps_mode='keras'``: Keras's form, ε added to sqrt(v) before the bias
    correction, with Keras's default ε = 1e-7. ``epsilon`` overrides the mode's default. ``weight_decay``
    is PyTorch's L2 form (added to the gradient). learning_rate 1e-3, beta_1 0.9, beta_2 0.999 as in both."""

    slot_names = ("m", "v")
    _config_keys = ("beta_1", "beta_2", "epsilon", "eps_mode", "weight_decay")
    _decoupled = False

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float | None = None,
        eps_mode: str = "torch",
        weight_decay: float = 0.0,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
    ) -> None:
        super().__init__(learning_rate, clipnorm, clipvalue, global_clipnorm)
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

    def _apply(
        self, items: list[tuple[SlotKey, BackendArray, BackendArray]], ctx: Context, lr: float
    ) -> None:
        """One step over every parameter in ONE kernel call (:func:`cnnkern.ops.adam_update_multi`; the same
        result as :func:`cnnkern.ops.adam_update` on each parameter, which :meth:`_update` still does)."""
        from . import ops

        if not items:
            return
        lists: tuple[list[BackendArray], ...] = ([], [], [], [])
        for key, param, grad in items:
            slots = self._slots_of(key, param, ctx)
            for lst, a in zip(lists, (param, grad, slots["m"], slots["v"])):
                lst.append(a)
        ops.adam_update_multi(*lists, **self._hyper(lr), backend=ctx.backend)

    def _hyper(self, lr: float) -> dict[str, Any]:
        """The keywords of ops.adam_update / adam_update_multi for the current step."""
        return dict(
            step=self.iterations,
            lr=lr,
            beta1=self.beta_1,
            beta2=self.beta_2,
            eps=self.epsilon,
            weight_decay=self.weight_decay,
            eps_mode=self.eps_mode,
            decoupled_weight_decay=self._decoupled,
        )

    def _update(
        self,
        param: BackendArray,
        grad: BackendArray,
        slots: dict[str, BackendArray],
        backend: Backend,
        lr: float,
    ) -> None:
        from . import ops

        ops.adam_update(param, grad, slots["m"], slots["v"], **self._hyper(lr), backend=backend)


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW, Keras's AdamW): each step first scales the weights
    by ``1 − lr·weight_decay``, then takes Adam's step on the undecayed gradient. Keras's default
    weight_decay 0.004; ε and ``eps_mode`` as :class:`Adam`."""

    _decoupled = True

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.001,
        weight_decay: float = 0.004,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float | None = None,
        eps_mode: str = "torch",
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
    ) -> None:
        super().__init__(
            learning_rate,
            beta_1,
            beta_2,
            epsilon,
            eps_mode,
            weight_decay,
            clipnorm,
            clipvalue,
            global_clipnorm,
        )


class RMSprop(Optimizer):
    """RMSprop with Keras's arguments and defaults (learning_rate 1e-3, rho 0.9, momentum 0, epsilon 1e-7,
    centered False) and PyTorch's numerics (torch.optim.RMSprop with alpha = rho): ε is added after the
    square root, and the momentum buffer accumulates ``g / (sqrt(s) + ε)`` before the learning rate.
    ``weight_decay`` is PyTorch's L2 form (added to the gradient)."""

    _config_keys = ("rho", "momentum", "epsilon", "centered", "weight_decay")

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
        weight_decay: float = 0.0,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
    ) -> None:
        super().__init__(learning_rate, clipnorm, clipvalue, global_clipnorm)
        from .ops import check

        self.rho = check.number("rho", rho, minimum=0.0, maximum=1.0, finite=True)
        self.momentum = _positive("momentum", momentum, allow_zero=True)
        self.epsilon = _positive("epsilon", epsilon, allow_zero=True)
        self.centered = check.flag("centered", centered)
        self.weight_decay = _positive("weight_decay", weight_decay, allow_zero=True)
        self.slot_names = (
            ("square_avg",)
            + (("momentum_buffer",) if self.momentum > 0.0 else ())
            + (("grad_avg",) if self.centered else ())
        )

    def _update(
        self,
        param: BackendArray,
        grad: BackendArray,
        slots: dict[str, BackendArray],
        backend: Backend,
        lr: float,
    ) -> None:
        from . import ops

        ops.rmsprop_update(
            param,
            grad,
            slots["square_avg"],
            slots.get("momentum_buffer"),
            slots.get("grad_avg"),
            lr=lr,
            rho=self.rho,
            eps=self.epsilon,
            weight_decay=self.weight_decay,
            momentum=self.momentum,
            centered=self.centered,
            backend=backend,
        )


_BY_NAME: dict[str, type[SGD] | type[Adam] | type[RMSprop]] = {
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
    "sgd": SGD,
}
_BY_CLASS: dict[str, type[SGD] | type[Adam] | type[RMSprop]] = {
    cls.__name__: cls for cls in _BY_NAME.values()
}


def get(identifier: str | Optimizer | dict[str, Any]) -> Optimizer:
    """An optimizer from a name ('adam', 'adamw', 'rmsprop', 'sgd': default arguments), a config dict
    (:meth:`Optimizer.get_config`, a schedule as its ``learning_rate`` dict), or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_CLASS:
        from . import schedules

        cfg = dict(identifier)
        cls = _BY_CLASS[cfg.pop("class_name")]
        if isinstance(cfg.get("learning_rate"), dict):
            cfg["learning_rate"] = schedules.deserialize(cfg["learning_rate"])
        return cls(**cfg)
    names = ", ".join(repr(n) for n in _BY_NAME)
    raise ValueError(
        f"optimizer must be one of {names}, an Optimizer instance or its config, got {identifier!r}"
    )
