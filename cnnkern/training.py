"""The training loop behind :meth:`cnnkern.models.Model.fit` and ``train_on_batch``: one step with the
non-finite rule (:mod:`cnnkern.nonfinite`), epochs, callbacks, and checkpoint / resume
(:class:`cnnkern.callbacks.BackupAndRestore`, :mod:`cnnkern.checkpoint`)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from . import callbacks as callbacks_mod
from . import checkpoint, losses, nonfinite
from ._typing import BackendArray, Logs
from .errors import NonFiniteLossError
from .layers import to_numpy

if TYPE_CHECKING:
    from .models import Model


def train_step(
    model: Model,
    xb: BackendArray,
    yb: BackendArray,
    epoch: int | None,
    step: int,
    check: bool,
    wb: BackendArray | None = None,
) -> tuple[BackendArray, BackendArray]:
    """Forward, backward and (unless the loss or a gradient is not finite while ``check``) the optimizer
    update; returns ``(loss, probs)``. On a non-finite step the batch-norm running statistics and the
    generator are put back as they were and :class:`NonFiniteLossError` is raised; no update is applied."""
    stats: list[tuple[dict[str, BackendArray], str, BackendArray]] = []
    rng_state: Mapping[str, Any] = {}
    if check:
        stats = [(d, k, d[k].copy()) for layer in model.layers for d in (layer.state,) for k in d]
        rng_state = model.rng.bit_generator.state
    dist = getattr(model, "_distributed", None)
    if dist is None:
        loss, probs = model._gradients(xb, yb, wb)
    else:  # gradients averaged across ranks; the global batch's loss (cnnkern.distributed)
        loss, probs = dist.train_gradients(model, xb, yb)
    items = [
        ((i, k), p, layer.grads[k])
        for i, layer in enumerate(model.layers)
        if layer.trainable
        for k, p in layer.params.items()
    ]
    if check:
        try:
            nonfinite.check_step(loss, [g for _, _, g in items], epoch, step, model._ctx.xp)
        except NonFiniteLossError:
            for d, k, a in stats:
                d[k] = a
            model.rng.bit_generator.state = rng_state
            for layer in model.layers:
                layer.grads = {}
                layer._clear()
            raise
    model.optimizer.apply_gradients(items, model._ctx)
    return loss, probs


def _gather(xp: Any, a: BackendArray, idx: BackendArray, out: BackendArray) -> BackendArray:
    """Rows ``idx`` of ``a`` into the preallocated ``out`` (NumPy's mode='clip' skips the buffered bounds
    check; the indices come from a permutation, so they are in range)."""
    if xp is np:
        return np.take(a, idx, axis=0, out=out, mode="clip")
    return xp.take(a, idx, axis=0, out=out)


def fit(
    model: Model,
    x: Any,
    y: Any,
    batch_size: int | None = None,
    epochs: int = 1,
    verbose: int = 1,
    callbacks: Iterable[callbacks_mod.Callback] | None = None,
    validation_split: float = 0.0,
    validation_data: tuple[ArrayLike, ...] | None = None,
    shuffle: bool = True,
    initial_epoch: int = 0,
    stop_on_nonfinite: bool = True,
    sample_weight: ArrayLike | None = None,
    class_weight: Mapping[int, float] | None = None,
    distributed: Any = None,
) -> callbacks_mod.History:
    """:meth:`cnnkern.models.Model.fit` (documented there)."""
    if distributed and getattr(model, "_distributed", None) is None:  # again, inside the strategy's hooks
        from .distributed import resolve

        if sample_weight is not None or class_weight is not None:
            raise ValueError(
                "sample_weight / class_weight are not supported with distributed=True (the ranks' weighted "
                "losses are not reduced yet): train without them, or in one process"
            )
        with resolve(distributed).training(model):  # type: ignore[union-attr]
            args = (batch_size, epochs, verbose, callbacks, validation_split, validation_data, shuffle)
            return fit(model, x, y, *args, initial_epoch, stop_on_nonfinite)
    dist = getattr(model, "_distributed", None)
    model._require_compiled("fit")
    batch_size = 32 if batch_size is None else int(batch_size)
    if batch_size < 1 or int(epochs) < 0:
        raise ValueError(f"batch_size must be >= 1 and epochs >= 0, got {batch_size}, {epochs}")
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
    check = bool(stop_on_nonfinite)
    n_all = len(x)
    w_all = losses.sample_weights(sample_weight, class_weight, np.asarray(to_numpy(y)), n_all)
    if validation_data is None and validation_split > 0.0:
        cut = n_all - int(n_all * validation_split)
        validation_data = (x[cut:], y[cut:]) if w_all is None else (x[cut:], y[cut:], w_all[cut:])
        x, y = x[:cut], y[:cut]
        w_all = None if w_all is None else w_all[:cut]
    X = model._to_internal(x, check_finite=check)
    n = X.shape[0]
    if n == 0:
        raise ValueError("x holds no samples to train on")
    Y = model._labels(y, n)
    W = None if w_all is None else model._ctx.asarray(w_all)
    val = None
    if validation_data is not None:
        if len(validation_data) not in (2, 3):
            raise ValueError(
                f"validation_data must be (x, y) or (x, y, sample_weight), got {len(validation_data)} items"
            )
        xv, yv = validation_data[0], validation_data[1]
        xv = model._to_internal(xv, "validation x", check_finite=check)
        yv = model._labels(yv, xv.shape[0], "validation y")
        wv = validation_data[2] if len(validation_data) == 3 else None
        wv = losses.sample_weights(wv, None, to_numpy(yv), xv.shape[0], "validation ")
        val = (xv, yv, None if wv is None else model._ctx.asarray(wv))

    steps = -(-n // batch_size)
    history = model.history = callbacks_mod.History()
    user_cbs = list(callbacks or [])
    backups = [cb for cb in user_cbs if isinstance(cb, callbacks_mod.BackupAndRestore)]
    if len(backups) > 1:
        raise ValueError(f"pass at most one BackupAndRestore callback, got {len(backups)}")
    backup = backups[0] if backups else None
    # TerminateOnNaN takes a non-finite step (not applied, cnnkern.nonfinite) instead of the raised error
    terminate = next((cb for cb in user_cbs if isinstance(cb, callbacks_mod.TerminateOnNaN)), None)
    bar = callbacks_mod.ProgressBar(verbose=verbose) if verbose and (dist is None or dist.is_chief) else None
    # Keras's order: the user's callbacks, then History (so it records what they add to the logs, such as
    # learning_rate), then the progress bar
    cbs = user_cbs + [history] + ([bar] if bar else [])
    for cb in cbs:
        cb.set_model(model)
        cb.params = {"epochs": int(epochs), "steps": steps, "batch_size": batch_size, "samples": n}
    xp = model._ctx.xp
    if shuffle:  # gather buffers, allocated once
        xbuf = xp.empty((min(batch_size, n),) + X.shape[1:], X.dtype)
        ybuf = xp.empty((min(batch_size, n),) + Y.shape[1:], Y.dtype)
        wbuf = None if W is None else xp.empty(min(batch_size, n), W.dtype)
    model.stop_training = False
    for cb in cbs:
        cb.on_train_begin()
    state = checkpoint.TrainState(epoch=int(initial_epoch))
    fit_info: dict[str, Any] = {}  # filled in (and used) only with a BackupAndRestore
    if backup is not None:
        fit_info = {
            "samples": n,
            "batch_size": batch_size,
            "steps": steps,
            "epochs": int(epochs),
            "shuffle": bool(shuffle),
            "data_crc32": checkpoint.data_fingerprint(X, Y, *([] if W is None else [W])),
        }
        backup.restored_from = None
        if os.path.exists(backup.filepath):
            checkpoint.restore(backup.filepath, model, state, [history] + user_cbs, fit_info)
            backup.restored_from = (state.epoch, state.step)
            model.stop_training = state.stop_training
        backup._steps_since_save = 0
    if dist is not None:  # every rank runs the same job, else all raise DistributedConfigError
        if val is not None and val[2] is not None:
            raise ValueError("validation sample weights are not supported with distributed=True")
        dist.check_start(
            model,
            X,
            Y,
            val[:2] if val else None,
            (batch_size, epochs, shuffle, check, state.epoch, state.step),
        )

    def save(backup: callbacks_mod.BackupAndRestore) -> None:
        if dist is not None and not dist.is_chief:
            return
        os.makedirs(backup.backup_dir, exist_ok=True)
        state.stop_training = model.stop_training
        checkpoint.write(backup.filepath, model, state, [history] + user_cbs, fit_info)

    logs: Logs = {}
    while state.epoch < int(epochs) and not model.stop_training:
        epoch = state.epoch
        for cb in cbs:
            cb.on_epoch_begin(epoch)
        if state.step == 0 or (shuffle and state.order is None):  # a fresh epoch (else: resumed mid-epoch)
            state.order = xp.asarray(model.rng.permutation(n)) if shuffle else None
            state.loss_sum = state.correct = 0.0
            state.step = 0
        order: BackendArray = state.order  # not None when shuffling
        first = state.step
        seen_to = n  # the samples the epoch's logs cover (fewer when a callback stops it mid-epoch)
        start = time.perf_counter()
        for step in range(first, steps):
            lo, hi = step * batch_size, min((step + 1) * batch_size, n)
            a, b = dist.shard(lo, hi) if dist is not None else (lo, hi)  # this rank's rows of the batch
            if shuffle:
                xb = _gather(xp, X, order[a:b], xbuf[: b - a])
                yb = _gather(xp, Y, order[a:b], ybuf[: b - a])
                wb = None if wbuf is None else _gather(xp, W, order[a:b], wbuf[: b - a])
            else:
                xb, yb = X[a:b], Y[a:b]
                wb = None if W is None else W[a:b]
            for cb in user_cbs:
                cb.on_train_batch_begin(step, {})
            try:
                loss, probs = train_step(model, xb, yb, epoch, step, check, wb)
            except NonFiniteLossError as exc:
                if terminate is None:
                    raise
                terminate.on_nonfinite(step, exc)
                seen_to = lo
                break
            state.loss_sum = state.loss_sum + loss * (hi - lo)
            if model.metrics:
                hits = dist.step_correct if dist is not None else losses.correct(probs, yb)
                state.correct = state.correct + hits
            state.step = step + 1
            # batch logs read the running sums back (a device sync on cuda): only when someone looks
            bar_due = bar is not None and bar.due(step)
            if user_cbs or bar_due:
                batch_logs = model._logs(state.loss_sum, state.correct, hi)
                for cb in user_cbs:
                    cb.on_train_batch_end(step, batch_logs)
                if bar is not None and bar_due:
                    bar.on_train_batch_end(step, batch_logs)
            if backup is not None and isinstance(backup.save_freq, int):  # every save_freq steps
                backup._steps_since_save += 1
                if backup._steps_since_save >= backup.save_freq:
                    save(backup)
                    backup._steps_since_save = 0
            if model.stop_training:  # a batch callback stopped training: Keras ends the epoch here
                seen_to = hi
                break
        model._ctx.backend.synchronize()
        elapsed = time.perf_counter() - start
        seen = seen_to - min(first * batch_size, n)
        history.epoch_seconds.append(elapsed)
        history.images_per_second.append(seen / elapsed if elapsed > 0 else 0.0)
        logs = model._logs(state.loss_sum, state.correct, seen_to) if seen_to else {}
        if val is not None:
            for cb in user_cbs:
                cb.on_test_begin({})
            if dist is None:
                vloss, vacc = model._evaluate_internal(val[0], val[1], batch_size, val[2], user_cbs)
            else:
                vloss, vacc = dist.evaluate_internal(model, val[0], val[1], batch_size)
            test_logs = {"loss": vloss, **({model.metrics[0]: vacc} if model.metrics else {})}
            for cb in user_cbs:
                cb.on_test_end(test_logs)
            logs.update({"val_" + k: v for k, v in test_logs.items()})
        for cb in cbs:
            cb.on_epoch_end(epoch, logs)
        state.epoch, state.step, state.order = epoch + 1, 0, None
        state.loss_sum = state.correct = 0.0
        if backup is not None and backup.save_freq == "epoch":
            save(backup)
    for cb in cbs:
        cb.on_train_end(logs)
    for layer in model.layers:
        layer._clear()
    chief = dist is None or dist.is_chief
    if backup is not None and backup.delete_checkpoint and chief and os.path.exists(backup.filepath):
        os.remove(backup.filepath)
    return history
