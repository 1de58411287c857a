"""Training callbacks in Keras's form: :class:`Callback`, :class:`History` (what ``fit`` returns),
:class:`EarlyStopping`, :class:`BackupAndRestore` (training that survives a kill) and :class:`ProgressBar`
(what ``verbose=1``/``2`` prints); and, from :mod:`cnnkern.standard_callbacks`, :class:`ModelCheckpoint`,
:class:`ReduceLROnPlateau`, :class:`TerminateOnNaN`, :class:`CSVLogger`, :class:`LearningRateScheduler`,
:class:`LambdaCallback`.

A callback whose state affects training implements :meth:`Callback.get_state` / :meth:`Callback.set_state`;
checkpoints (:mod:`cnnkern.checkpoint`) store that state and give it back on resume."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from ._typing import Logs, PathLike

if TYPE_CHECKING:
    from .models import Model

__all__ = [
    "BackupAndRestore",
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ProgressBar",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
]


class Callback:
    """Hooks called by ``Model.fit``; ``self.model`` is set before training starts. ``logs`` hold
    floats: ``loss``, ``accuracy`` and, with validation, ``val_loss``, ``val_accuracy``. Keras's hook
    points: ``on_train_begin/end``, ``on_epoch_begin/end``, ``on_train_batch_begin/end`` (``on_batch_begin``
    / ``on_batch_end``: Keras's aliases, called by the default ``on_train_batch_*``), ``on_test_begin/end``
    and ``on_test_batch_begin/end`` (``evaluate(callbacks=...)``, and ``fit``'s validation pass, whose logs
    hold its ``loss`` and accuracy unprefixed), ``on_predict_begin/end`` and ``on_predict_batch_begin/end``
    (``predict(callbacks=...)``; batch logs ``{"outputs": ...}``)."""

    # set by set_model() before training starts; None until then
    model: Model = None  # type: ignore[assignment]
    # set by fit before on_train_begin: epochs, steps (per epoch), batch_size, samples
    params: dict[str, Any]

    def set_model(self, model: Model) -> None:
        self.model = model

    def on_train_begin(self, logs: Logs | None = None) -> None:
        pass

    def on_train_end(self, logs: Logs | None = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        pass

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self.on_batch_end(batch, logs)

    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        pass

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        pass

    def on_test_begin(self, logs: Logs | None = None) -> None:
        pass

    def on_test_end(self, logs: Logs | None = None) -> None:
        pass

    def on_test_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        pass

    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        pass

    def on_predict_begin(self, logs: Logs | None = None) -> None:
        pass

    def on_predict_end(self, logs: Logs | None = None) -> None:
        pass

    def on_predict_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    def get_state(self) -> dict[str, Any] | None:
        """What a checkpoint must hold for a resumed run to behave as an uninterrupted one: a dict of JSON
        values, NumPy arrays and lists of NumPy arrays, or None (the default: nothing to keep)."""
        return None

    def set_state(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`get_state` returned (called after ``on_train_begin`` on resume)."""


class History(Callback):
    """``history``: metric name -> list of per-epoch values; ``epoch``: the epoch indices run.
    Beyond Keras: ``epoch_seconds`` (training time of each epoch, validation excluded) and
    ``images_per_second`` (training throughput of each epoch)."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.epoch_seconds: list[float] = []
        self.images_per_second: list[float] = []
        self.params = {}

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def get_state(self) -> dict[str, Any] | None:
        return {
            "history": self.history,
            "epoch": self.epoch,
            "epoch_seconds": self.epoch_seconds,
            "images_per_second": self.images_per_second,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.history = {k: list(v) for k, v in state["history"].items()}
        self.epoch = list(state["epoch"])
        self.epoch_seconds = list(state["epoch_seconds"])
        self.images_per_second = list(state["images_per_second"])


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    ``mode``: 'min', 'max' or 'auto' (max for names containing 'acc', else min). ``baseline``: a value to
    beat before any improvement counts. ``restore_best_weights``: when stopping, go back to the weights of
    the best epoch. ``start_from_epoch``: epochs to wait before monitoring. A monitored value missing from
    the logs is reported once and ignored, as Keras does.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if patience < 0 or start_from_epoch < 0:
            raise ValueError(
                f"patience and start_from_epoch must be >= 0, got {patience}, {start_from_epoch}"
            )
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = int(start_from_epoch)
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.mode = mode
        self.stopped_epoch = 0
        self._warned = False

    def _better(self, current: float, reference: float) -> bool:
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = np.inf if self.mode == "min" else -np.inf
        if self.baseline is not None:
            self.best = float(self.baseline)
        self.best_weights: list[np.ndarray] | None = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        current = (logs or {}).get(self.monitor)
        if current is None:
            if not self._warned:
                print(
                    f"EarlyStopping: {self.monitor!r} is not in the logs (available: "
                    f"{', '.join(logs or {})}); not stopping on it",
                    file=sys.stderr,
                )
                self._warned = True
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._better(current, self.best):
            self.best = current
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                if self.verbose:
                    print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
                self.model.set_weights(self.best_weights)

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")

    def get_state(self) -> dict[str, Any] | None:
        return {
            "wait": self.wait,
            "best": float(self.best),
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "warned": self._warned,
            "best_weights": self.best_weights,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.wait = int(state["wait"])
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.stopped_epoch = int(state["stopped_epoch"])
        self._warned = bool(state["warned"])
        self.best_weights = state["best_weights"]


class BackupAndRestore(Callback):
    """Training that survives a crash or a ``kill -9`` (Keras 3's names): ``fit`` writes a checkpoint
    (:mod:`cnnkern.checkpoint`) to ``backup_dir/<filename>`` every ``save_freq`` ('epoch', or an int: every
    that many steps), and when it starts and finds one there, resumes from it: weights, optimizer state,
    epoch and step, the shuffling and dropout generator, the partly run epoch's running loss and the
    callbacks' state (History, EarlyStopping). The resumed run ends with the weights of an uninterrupted one,
    bitwise, on the same backend. ``delete_checkpoint``: remove the file when ``fit`` completes.

    The checkpoint records the model's architecture and compile settings and a fingerprint of the training
    data; resuming with another model or other data is a :class:`cnnkern.errors.CheckpointError`.
    ``restored_from``: after ``fit`` began, ``(epoch, step)`` where it resumed (0-based), else None.
    """

    def __init__(
        self,
        backup_dir: PathLike,
        save_freq: str | int = "epoch",
        delete_checkpoint: bool = True,
        filename: str = "checkpoint.npz",
    ) -> None:
        import os

        if save_freq != "epoch" and (
            isinstance(save_freq, bool) or not isinstance(save_freq, (int, np.integer)) or save_freq < 1
        ):
            raise ValueError(f"save_freq must be 'epoch' or a positive int (steps), got {save_freq!r}")
        if not isinstance(filename, str) or not filename or os.sep in filename:
            raise ValueError(f"filename must be a plain file name, got {filename!r}")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq if save_freq == "epoch" else int(save_freq)
        self.delete_checkpoint = bool(delete_checkpoint)
        self.filepath = os.path.join(self.backup_dir, filename)
        self.restored_from: tuple[int, int] | None = None
        self._steps_since_save = 0


class ProgressBar(Callback):
    """Keras-like progress: ``verbose=1`` a bar per epoch (redrawn at most 10 times a second on a terminal,
    one line per epoch otherwise), ``verbose=2`` one line per epoch. Shows loss, accuracy and images/s."""

    def __init__(self, verbose: int = 1, file: TextIO | None = None, width: int = 30) -> None:
        self.verbose = verbose
        self.file = file or sys.stdout
        self.width = width
        self.live = verbose == 1 and hasattr(self.file, "isatty") and self.file.isatty()

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.epochs = self.params["epochs"]
        self.steps = self.params["steps"]

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self.start = time.perf_counter()
        self.last_draw = 0.0
        if self.verbose == 1:
            print(f"Epoch {epoch + 1}/{self.epochs}", file=self.file, flush=True)

    def _metrics(self, logs: Logs, seen: int) -> tuple[float, str]:
        elapsed = time.perf_counter() - self.start
        parts = [f"{k}: {v:.4f}" for k, v in logs.items()]
        parts.append(f"{seen / max(elapsed, 1e-9):,.0f} img/s")
        return elapsed, " - ".join(parts)

    def due(self, batch: int) -> bool:
        """Whether the bar would redraw after ``batch`` (so that fit reads the running loss only then)."""
        return self.live and (batch + 1 == self.steps or time.perf_counter() - self.last_draw >= 0.1)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if not self.due(batch):
            return
        self.last_draw = time.perf_counter()
        seen = min((batch + 1) * self.params["batch_size"], self.params["samples"])
        elapsed, text = self._metrics(logs or {}, seen)
        done = (batch + 1) * self.width // self.steps
        bar = "=" * max(done - 1, 0) + (">" if done < self.width else "=") + "." * (self.width - done)
        print(
            f"\r{batch + 1}/{self.steps} [{bar}] - {elapsed:.0f}s - {text}",
            end="",
            file=self.file,
            flush=True,
        )

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        history = self.model.history
        assert history is not None  # fit sets it before the first epoch
        elapsed = history.epoch_seconds[-1]
        speed = history.images_per_second[-1]
        text = " - ".join(f"{k}: {v:.4f}" for k, v in (logs or {}).items())
        prefix = (
            f"\r{self.steps}/{self.steps} [{'=' * self.width}]"
            if self.verbose == 1
            else f"Epoch {epoch + 1}/{self.epochs}"
        )
        print(f"{prefix} - {elapsed:.1f}s - {text} - {speed:,.0f} img/s", file=self.file, flush=True)


# Keras's standard callbacks, defined beside (they subclass Callback, so they are imported last)
from .standard_callbacks import (  # noqa: E402
    CSVLogger,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
