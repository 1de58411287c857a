"""The one rule for NaN and Inf in cnnkern: they never pass silently.

* **Inputs**: ``predict``, ``evaluate``, ``train_on_batch`` and ``fit`` refuse images holding NaN or +-Inf
  with :class:`cnnkern.errors.NonFiniteInputError`, naming the argument and the first bad sample. The check
  runs on the data as the model will see it (after the cast to the model's dtype, where 1e300 becomes inf).
  ``fit`` checks ``x`` (and the validation data) once, up front, before the first step.
* **Training**: each step's loss and gradients are checked BEFORE the optimizer applies the update; a
  non-finite value raises :class:`cnnkern.errors.NonFiniteLossError` naming the epoch and the step, with
  the weights, the optimizer state and the batch-norm running statistics left as they were after the
  previous step. ``fit(..., stop_on_nonfinite=False)`` turns both ``fit`` checks off (the old behaviour:
  train on, with NaN spreading into every weight). The check is one ``isfinite(...).all()`` pass over each
  gradient array: about 0.07 ms per step for the classic CNN's 93k parameters (2-core VM).

:class:`cnnkern.callbacks.TerminateOnNaN` builds on this rule rather than its own test: ``fit`` hands it the
:class:`NonFiniteLossError` of :func:`check_step` (the step not applied) instead of raising it, and with
the check off it watches the batch loss through :func:`is_finite`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ._typing import BackendArray
from .errors import NonFiniteInputError, NonFiniteLossError

__all__ = ["check_inputs", "check_step", "first_nonfinite", "is_finite"]

_CHUNK = 4096  # samples per isfinite pass: bounds the temporary boolean array for large datasets
_SMALL = 16384  # values checked by isfinite directly (a temporary of at most 16 KB)

CAUSES = (
    "a learning rate too high for this model (try 10x smaller), exploding activations (add "
    "BatchNormalization, or scale the inputs to a sane range such as [0, 1]), huge finite input values that "
    "overflow float32, or NaN / Inf in the inputs when their check was turned off"
)


def first_nonfinite(x: BackendArray, xp: Any = np) -> int | None:
    """Index of the first sample (along axis 0) of ``x`` holding a NaN or an Inf; None when all are finite.
    Integer arrays are finite by construction and are not scanned."""
    if x.dtype.kind not in "fc":
        return None
    # A small array (one image): isfinite over it, no warning possible, so no errstate (1.6 us against 2.9
    # for a 28x28 image). Else one pass without a temporary: a NaN or Inf anywhere makes the sum NaN or Inf,
    # so a finite sum proves every value finite. A non-finite sum may also be an overflow of finite values:
    # the exact scan below decides.
    if x.size <= _SMALL:
        if bool(xp.isfinite(x).all()):
            return None
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            if bool(xp.isfinite(x.sum())):
                return None
    n = x.shape[0]
    for lo in range(0, n, _CHUNK):
        block = x[lo : lo + _CHUNK].reshape(min(_CHUNK, n - lo), -1)
        bad = ~xp.isfinite(block).all(axis=1)
        if bool(bad.any()):
            return lo + int(xp.argmax(bad))
    return None


def check_inputs(x: BackendArray, name: str, xp: Any = np) -> None:
    """Raise :class:`NonFiniteInputError` if any sample of ``x`` holds NaN or Inf."""
    i = first_nonfinite(x, xp)
    if i is not None:
        block = x[i]
        nan = bool(xp.isnan(block).any())
        raise NonFiniteInputError(
            f"{name} holds {'NaN' if nan else 'Inf'} values (first in sample {name}[{i}] of {x.shape[0]}); "
            f"clean or drop those samples first (e.g. keep = np.isfinite({name}).reshape(len({name}), -1)"
            f".all(axis=1))",
            argument=name,
            index=i,
        )


def is_finite(loss: BackendArray | float, grads: Iterable[BackendArray] = (), xp: Any = np) -> bool:
    """Whether ``loss`` and every array in ``grads`` are free of NaN and Inf (exact: no false alarm on large
    finite values; one host sync in all on a GPU)."""
    ok = xp.isfinite(xp.asarray(loss)).all()
    for g in grads:
        ok = ok & xp.isfinite(g).all()
    return bool(ok)


def check_step(
    loss: BackendArray | float, grads: Iterable[BackendArray], epoch: int | None, step: int, xp: Any = np
) -> None:
    """Raise :class:`NonFiniteLossError` if this step's loss or gradients are not finite. ``epoch`` None:
    a step outside ``fit`` (``train_on_batch``; ``step`` is then the optimizer's iteration)."""
    if is_finite(loss, grads, xp):
        return
    value = float(loss)
    where = f"epoch {epoch + 1}, step {step + 1}" if epoch is not None else f"train_on_batch step {step + 1}"
    what = f"loss {value}" if not np.isfinite(value) else f"a non-finite gradient (loss {value})"
    raise NonFiniteLossError(
        f"training stopped at {where} (1-based): {what}. The update of that step was NOT applied: the "
        f"weights and optimizer state are those after the previous step. Likely causes: {CAUSES}. "
        f"fit(..., stop_on_nonfinite=False) trains on regardless.",
        epoch=epoch,
        step=step,
        loss=value,
    )
