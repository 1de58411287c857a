"""Keras's standard callbacks beyond History / EarlyStopping / BackupAndRestore, with Keras's arguments and
behaviour: :class:`ModelCheckpoint`, :class:`ReduceLROnPlateau`, :class:`TerminateOnNaN`,
:class:`CSVLogger`, :class:`LearningRateScheduler`, :class:`LambdaCallback`. Imported into
:mod:`cnnkern.callbacks` (use them from there)."""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from . import nonfinite
from ._typing import Logs, PathLike
from .callbacks import Callback
from .errors import NonFiniteLossError

__all__ = [
    "CSVLogger",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
]


def _mode(mode: str, monitor: str) -> str:
    """Keras's 'auto': 'max' for accuracies (names holding 'acc'), else 'min'."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


def _warn_missing(who: str, monitor: str, logs: Logs | None) -> None:
    print(
        f"{who}: {monitor!r} is not in the logs (available: {', '.join(logs or {})}); skipping",
        file=sys.stderr,
    )


class ModelCheckpoint(Callback):
    """Save the model (architecture, weights and compile settings: :meth:`Sequential.save`'s one-file
    format, written atomically) to ``filepath`` at the end of every epoch (``save_freq='epoch'``) or every
    ``save_freq`` steps. ``filepath`` may hold Keras's placeholders: ``{epoch}`` (1-based), ``{batch}``
    (1-based, with an int save_freq) and any log name, e.g. ``'ckpt-{epoch:02d}-{val_loss:.3f}.npz'``.

    ``save_best_only``: save only when ``monitor`` improved on the best seen (``mode`` 'min', 'max' or
    'auto'; ``initial_value_threshold``: the value to beat at first); a NaN never counts as an improvement
    and a missing monitor is reported and skipped, as Keras does. ``best`` holds the best value."""

    def __init__(
        self,
        filepath: PathLike,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        mode: str = "auto",
        save_freq: str | int = "epoch",
        initial_value_threshold: float | None = None,
    ) -> None:
        if save_freq != "epoch" and (
            isinstance(save_freq, bool) or not isinstance(save_freq, (int, np.integer)) or save_freq < 1
        ):
            raise ValueError(f"save_freq must be 'epoch' or a positive int (steps), got {save_freq!r}")
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.mode = _mode(mode, monitor)
        self.save_freq = save_freq if save_freq == "epoch" else int(save_freq)
        self.initial_value_threshold = initial_value_threshold
        self.best = self._initial_best()
        self._epoch = 0
        self._batches_seen = 0

    def _initial_best(self) -> float:
        if self.initial_value_threshold is not None:
            return float(self.initial_value_threshold)
        return np.inf if self.mode == "min" else -np.inf

    def _improved(self, current: float) -> bool:
        return bool(current < self.best if self.mode == "min" else current > self.best)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if isinstance(self.save_freq, int):
            self._batches_seen += 1
            if self._batches_seen % self.save_freq == 0:
                self._save(self._epoch, batch, logs)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _save(self, epoch: int, batch: int | None, logs: Logs | None) -> None:
        logs = dict(logs or {})
        fields: dict[str, Any] = {"epoch": epoch + 1, **logs}
        if batch is not None:
            fields["batch"] = batch + 1
        try:
            path = self.filepath.format(**fields)
        except KeyError as exc:
            raise KeyError(
                f"ModelCheckpoint filepath {self.filepath!r} names {exc}, which is not in the logs "
                f"(available: {', '.join(fields)})"
            ) from None
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                _warn_missing("ModelCheckpoint", self.monitor, logs)
                return
            if not self._improved(current):
                if self.verbose:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose:
                print(
                    f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                    f"saving model to {path}"
                )
            self.best = float(current)
        elif self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self.model.save(path)

    def get_state(self) -> dict[str, Any] | None:
        return {"best": float(self.best), "batches_seen": self._batches_seen}

    def set_state(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self._batches_seen = int(state["batches_seen"])


class ReduceLROnPlateau(Callback):
    """Multiply the optimizer's learning rate by ``factor`` (< 1) when ``monitor`` has not improved by more
    than ``min_delta`` for ``patience`` epochs, not below ``min_lr``; then wait ``cooldown`` epochs before
    counting again (Keras's rules, including its ``min_delta`` default 1e-4). Adds ``learning_rate`` to the
    epoch logs. The optimizer's learning_rate must be a number (a schedule cannot be set)."""

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        if not 0.0 < float(factor) < 1.0:
            raise ValueError(f"factor must be in (0, 1) (it multiplies the learning rate), got {factor}")
        if patience < 0 or cooldown < 0 or min_lr < 0:
            raise ValueError(
                f"patience, cooldown and min_lr must be >= 0, got {patience}, {cooldown}, {min_lr}"
            )
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _mode(mode, monitor)
        self.min_delta = float(min_delta)
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self._reset()

    def _reset(self) -> None:
        self.best = np.inf if self.mode == "min" else -np.inf
        self.wait = 0
        self.cooldown_counter = 0

    def _improved(self, current: float) -> bool:
        if self.mode == "min":
            return bool(current < self.best - self.min_delta)
        return bool(current > self.best + self.min_delta)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        opt = self.model.optimizer
        if logs is not None:
            logs["learning_rate"] = float(opt.learning_rate)
        current = (logs or {}).get(self.monitor)
        if current is None:
            _warn_missing("ReduceLROnPlateau", self.monitor, logs)
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best = float(current)
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(opt.learning_rate)
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    opt.learning_rate = new
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    def get_state(self) -> dict[str, Any] | None:
        return {"best": float(self.best), "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def set_state(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.wait = int(state["wait"])
        self.cooldown_counter = int(state["cooldown_counter"])


class TerminateOnNaN(Callback):
    """Stop training at the first non-finite loss, as Keras's TerminateOnNaN, on cnnkern's non-finite rule
    (:mod:`cnnkern.nonfinite`): with ``fit``'s check on (the default), the step whose loss or gradients are
    not finite is NOT applied, and instead of raising :class:`cnnkern.errors.NonFiniteLossError`, ``fit``
    hands it to this callback, which prints Keras's line and ends training after that epoch's callbacks
    (the weights stay those after the last good step). With ``stop_on_nonfinite=False`` it watches the
    batch logs' loss (:func:`cnnkern.nonfinite.is_finite`), as Keras does. ``error``: the error met, or
    None."""

    def __init__(self) -> None:
        self.error: NonFiniteLossError | None = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.error = None

    def on_nonfinite(self, batch: int, error: NonFiniteLossError) -> None:
        """Called by ``fit`` in place of raising ``error`` at step ``batch`` (0-based, within the epoch)."""
        self.error = error
        print(f"Batch {batch}: Invalid loss, terminating training", file=sys.stderr)
        self.model.stop_training = True

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not nonfinite.is_finite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training", file=sys.stderr)
            self.model.stop_training = True


class CSVLogger(Callback):
    """Write one CSV row per epoch to ``filename``: ``epoch`` (0-based) then the logs' names sorted, Keras's
    layout; ``append``: add to an existing file (no second header). Flushed after every row."""

    def __init__(self, filename: PathLike, separator: str = ",", append: bool = False) -> None:
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = bool(append)
        self._file: IO[str] | None = None
        self._writer: Any = None
        self._keys: list[str] | None = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        had_rows = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")  # noqa: SIM115 (closed at the end)
        self._writer = None
        self._keys = None
        self._header_written = had_rows

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        if self._keys is None:
            self._keys = sorted(logs)
        if self._writer is None:
            assert self._file is not None  # opened by on_train_begin
            self._writer = csv.DictWriter(
                self._file, fieldnames=["epoch", *self._keys], delimiter=self.separator
            )
            if not self._header_written:
                self._writer.writeheader()
        row = {"epoch": epoch, **{k: logs.get(k, "NA") for k in self._keys}}
        self._writer.writerow(row)
        assert self._file is not None
        self._file.flush()

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._writer = None


class LearningRateScheduler(Callback):
    """At the start of each epoch set the optimizer's learning rate to ``schedule(epoch, lr)`` (epoch
    0-based, lr the current rate), as Keras's; adds ``learning_rate`` to the epoch logs."""

    def __init__(self, schedule: Callable[[int, float], float], verbose: int = 0) -> None:
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        from .ops import check

        opt = self.model.optimizer
        lr = self.schedule(epoch, float(opt.learning_rate))
        if isinstance(lr, (np.floating, np.integer)):
            lr = float(lr)
        if not isinstance(lr, (float, int)) or isinstance(lr, bool):
            raise ValueError(f"the schedule function must return a number, got {lr!r} for epoch {epoch}")
        opt.learning_rate = check.number("learning_rate (from the schedule function)", lr, finite=True)
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


_HOOKS = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_begin",
    "on_test_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_begin",
    "on_predict_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
)


class LambdaCallback(Callback):
    """A callback from plain functions, Keras's: ``on_epoch_begin(epoch, logs)``, ``on_epoch_end(epoch,
    logs)``, ``on_train_batch_begin(batch, logs)``, ``on_train_batch_end(batch, logs)``,
    ``on_train_begin(logs)``, ``on_train_end(logs)``, and the ``on_test_*`` / ``on_predict_*`` hooks alike
    (``*_begin(logs)`` / ``*_end(logs)``, ``*_batch_begin(batch, logs)`` / ``*_batch_end(batch, logs)``)."""

    def __init__(self, **hooks: Callable[..., Any] | None) -> None:
        unknown = sorted(set(hooks) - set(_HOOKS))
        if unknown:
            raise TypeError(f"LambdaCallback got unknown hooks {unknown}; it takes {', '.join(_HOOKS)}")
        for name, fn in hooks.items():
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"{name} must be callable, got {fn!r}")
                setattr(self, name, _bound(name, fn))


def _bound(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """The hook calling ``fn`` with Keras's positional arguments, ``logs`` always passed."""
    if name.endswith(
        ("_train_begin", "_train_end", "_test_begin", "_test_end", "_predict_begin", "_predict_end")
    ):
        return lambda logs=None: fn(logs)
    return lambda index, logs=None: fn(index, logs)
