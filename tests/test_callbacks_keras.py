"""Keras's standard callbacks (cnnkern.standard_callbacks) and fit's hook points, against Keras's documented
behaviour: hook order, ModelCheckpoint, ReduceLROnPlateau, TerminateOnNaN (on the non-finite rule),
CSVLogger, LearningRateScheduler, LambdaCallback; the learning rate a callback set survives a checkpoint."""

import csv
import math

import numpy as np
import pytest

from cnnkern import callbacks, checkpoint, layers, models, optimizers, saving
from cnnkern.errors import NonFiniteLossError

N, BATCH = 20, 8  # 3 steps per epoch, the last one short


def small_model(lr=1e-2, opt=None):
    m = models.Sequential(backend="reference", seed=3)
    m.add(layers.Conv2D(2, 3, padding="same", activation="relu", input_shape=(5, 5, 1)))
    m.add(layers.Flatten())
    m.add(layers.Dense(3, activation="softmax"))
    m.compile(optimizer=opt or optimizers.SGD(lr, momentum=0.9), metrics=["accuracy"])
    return m


def data(seed=0, n=N):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5, 5, 1)).astype(np.float32), rng.integers(0, 3, n)


class Recorder(callbacks.Callback):
    """Records every hook, with on_batch_begin / on_batch_end reached through Keras's aliases."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_train_end(self, logs=None):
        self.calls.append("train_end")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"epoch_begin {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"epoch_end {epoch} {sorted(logs)}")

    def on_batch_begin(self, batch, logs=None):
        self.calls.append(f"batch_begin {batch}")

    def on_batch_end(self, batch, logs=None):
        self.calls.append(f"batch_end {batch}")

    def on_test_begin(self, logs=None):
        self.calls.append("test_begin")

    def on_test_end(self, logs=None):
        self.calls.append(f"test_end {sorted(logs)}")


def test_hook_order_is_keras():
    m, (x, y), rec = small_model(), data(), Recorder()
    m.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, validation_data=data(1, 6), callbacks=[rec])
    epoch = lambda e: [  # noqa: E731
        f"epoch_begin {e}",
        *[f"batch_{w} {b}" for b in range(3) for w in ("begin", "end")],
        "test_begin",
        "test_end ['accuracy', 'loss']",
        f"epoch_end {e} ['accuracy', 'loss', 'val_accuracy', 'val_loss']",
    ]
    assert rec.calls == ["train_begin", *epoch(0), *epoch(1), "train_end"]


def test_evaluate_and_predict_hooks():
    m, (x, y) = small_model(), data()
    seen = []
    cb = callbacks.LambdaCallback(
        on_test_begin=lambda logs: seen.append("test_begin"),
        on_test_batch_end=lambda b, logs: seen.append(("test_batch", b, round(logs["loss"], 12))),
        on_test_end=lambda logs: seen.append(("test_end", round(logs["loss"], 12))),
        on_predict_begin=lambda logs: seen.append("predict_begin"),
        on_predict_batch_begin=lambda b, logs: seen.append(("predict_batch", b)),
        on_predict_batch_end=lambda b, logs: seen.append(("outputs", b, logs["outputs"].shape)),
        on_predict_end=lambda logs: seen.append("predict_end"),
    )
    loss, _ = m.evaluate(x, y, batch_size=BATCH, callbacks=[cb])
    # running logs: after the last batch they are the result
    assert seen[0] == "test_begin" and [s[1] for s in seen[1:4]] == [0, 1, 2]
    assert seen[3][2] == seen[4][1] == round(loss, 12)
    seen.clear()
    out = m.predict(x, batch_size=BATCH, callbacks=[cb])
    assert seen == [
        "predict_begin",
        ("predict_batch", 0), ("outputs", 0, (8, 3)),
        ("predict_batch", 1), ("outputs", 1, (8, 3)),
        ("predict_batch", 2), ("outputs", 2, (4, 3)),
        "predict_end",
    ]  # fmt: skip
    assert out.shape == (N, 3)
    seen.clear()
    m.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, validation_data=data(1, 10), callbacks=[cb])
    assert seen[0] == "test_begin" and [s[:2] for s in seen[1:3]] == [("test_batch", 0), ("test_batch", 1)]


def test_lambda_callback_passes_keras_arguments():
    m, (x, y) = small_model(), data()
    seen = []
    cb = callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(("epoch", epoch, round(logs["loss"], 12))),
        on_train_batch_begin=lambda batch, logs: seen.append(("batch", batch)),
        on_train_end=lambda logs: seen.append(("end",)),
    )
    hist = m.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[cb])
    assert seen == [
        ("batch", 0),
        ("batch", 1),
        ("batch", 2),
        ("epoch", 0, round(hist.history["loss"][0], 12)),
        ("end",),
    ]
    with pytest.raises(TypeError, match="on_predict_step"):
        callbacks.LambdaCallback(on_predict_step=print)


def test_learning_rate_scheduler_sets_the_rate_each_epoch():
    m, (x, y) = small_model(lr=0.1), data()
    used = []
    spy = callbacks.LambdaCallback(
        on_train_batch_begin=lambda b, logs: used.append(m.optimizer.learning_rate)
    )
    sched = callbacks.LearningRateScheduler(lambda epoch, lr: lr if epoch < 1 else lr * math.exp(-0.5))
    hist = m.fit(x, y, batch_size=BATCH, epochs=3, verbose=0, callbacks=[sched, spy])
    want = [0.1, 0.1 * math.exp(-0.5), 0.1 * math.exp(-1.0)]
    assert used == pytest.approx([lr for lr in want for _ in range(3)], rel=1e-15)
    assert hist.history["learning_rate"] == pytest.approx(want, rel=1e-15)
    bad = callbacks.LearningRateScheduler(lambda epoch, lr: "fast")
    with pytest.raises(ValueError, match="must return a number"):
        small_model().fit(x, y, epochs=1, verbose=0, callbacks=[bad])


class _FakeModel:
    """What ReduceLROnPlateau and ModelCheckpoint touch, to drive them with chosen logs."""

    def __init__(self, opt):
        self.optimizer = opt
        self.stop_training = False
        self.saved = []

    def save(self, path):
        self.saved.append(path)


def test_reduce_lr_on_plateau_follows_keras_rules():
    """patience 2, factor 0.5, cooldown 1, min_lr 0.2, min_delta 1e-4 ('min'); the rates worked out by hand
    from Keras's rules: a reduction after `patience` epochs without improvement, the cooldown epoch not
    counted, never below min_lr (and no reduction, the wait kept, once there)."""
    cb = callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, cooldown=1, min_lr=0.2)
    fake = _FakeModel(optimizers.SGD(1.0))
    cb.set_model(fake)
    cb.on_train_begin()
    values = [1.0, 0.9, 0.95, 0.93, 0.91, 0.92, 0.5, 0.6, 0.6, 0.6, 0.6]
    rates, logged = [], []
    for e, v in enumerate(values):
        logs = {"val_loss": v}
        cb.on_epoch_end(e, logs)
        rates.append(fake.optimizer.learning_rate)
        logged.append(logs["learning_rate"])
    assert rates == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2]
    assert logged == [1.0] * 4 + [0.5] * 2 + [0.25] * 3 + [0.2] * 2  # the rate the epoch ran with
    assert cb.wait == 2
    with pytest.raises(ValueError, match="factor"):
        callbacks.ReduceLROnPlateau(factor=1.0)


def test_reduce_lr_on_plateau_in_fit_and_resume(tmp_path):
    """In fit (monitor 'loss', patience 0, min_delta 10: every epoch after the first halves the rate), and
    the reduced rate goes through a checkpoint into a model compiled with the original rate."""
    m, (x, y) = small_model(lr=0.05), data()
    cb = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0)
    hist = m.fit(x, y, batch_size=BATCH, epochs=3, verbose=0, callbacks=[cb])
    assert hist.history["learning_rate"] == [0.05, 0.05, 0.025]  # the rate each epoch ran with
    assert m.optimizer.learning_rate == 0.0125
    path = tmp_path / "ckpt.npz"
    checkpoint.write(path, m, checkpoint.TrainState(epoch=3), [cb], {})
    m2 = small_model(lr=0.05)
    m2.build()  # as fit has when it restores
    cb2 = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0)
    checkpoint.restore(path, m2, checkpoint.TrainState(), [cb2], {})
    assert m2.optimizer.learning_rate == 0.0125 and cb2.best == cb.best


def test_model_checkpoint_every_epoch_writes_the_model_file(tmp_path):
    m, (x, y) = small_model(), data()
    cb = callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch:02d}-{loss:.3f}.npz"), monitor="loss")
    hist = m.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[cb])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"m-{e + 1:02d}-{hist.history['loss'][e]:.3f}.npz" for e in range(2)]
    last = saving.load_model(tmp_path / names[-1])
    for a, b in zip(last.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert last.optimizer.get_config() == m.optimizer.get_config()


def test_model_checkpoint_save_best_only(tmp_path, capsys):
    fake = _FakeModel(optimizers.SGD())
    cb = callbacks.ModelCheckpoint(str(tmp_path / "best-{epoch}.npz"), save_best_only=True)  # val_loss, min
    cb.set_model(fake)
    for e, v in enumerate([0.5, 0.6, 0.4, float("nan"), 0.45, 0.39]):
        cb.on_epoch_end(e, {"val_loss": v})
    assert [p.rsplit("/", 1)[1] for p in fake.saved] == ["best-1.npz", "best-3.npz", "best-6.npz"]
    assert cb.best == 0.39
    acc = callbacks.ModelCheckpoint(str(tmp_path / "a.npz"), monitor="val_accuracy", save_best_only=True)
    assert acc.mode == "max"
    acc.set_model(fake)
    fake.saved.clear()
    for e, v in enumerate([0.5, 0.4, 0.7]):
        acc.on_epoch_end(e, {"val_accuracy": v})
    assert len(fake.saved) == 2
    acc.on_epoch_end(3, {"loss": 0.1})
    assert "'val_accuracy' is not in the logs" in capsys.readouterr().err and len(fake.saved) == 2
    thr = callbacks.ModelCheckpoint(str(tmp_path / "t.npz"), save_best_only=True, initial_value_threshold=0.3)
    thr.set_model(fake)
    fake.saved.clear()
    thr.on_epoch_end(0, {"val_loss": 0.35})
    thr.on_epoch_end(1, {"val_loss": 0.25})
    assert len(fake.saved) == 1


def test_model_checkpoint_every_n_steps(tmp_path):
    m, (x, y) = small_model(), data()
    cb = callbacks.ModelCheckpoint(str(tmp_path / "s-{epoch}-{batch}.npz"), save_freq=2)
    m.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[cb])  # steps 2, 4, 6 of 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s-1-2.npz", "s-2-1.npz", "s-2-3.npz"]


class _Poison(callbacks.Callback):
    """Sets every weight to NaN after step ``k`` (0-based) of the first epoch."""

    def __init__(self, k):
        self.k = k

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.k:
            self.model.set_weights([np.full_like(w, np.nan) for w in self.model.get_weights()])


def test_terminate_on_nan_stops_on_the_nonfinite_rule(capsys):
    m, (x, y) = small_model(), data(n=40)  # 5 steps per epoch
    with pytest.raises(NonFiniteLossError):
        m.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[_Poison(1)])
    m, term = small_model(), callbacks.TerminateOnNaN()
    hist = m.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[_Poison(1), term])
    assert "Batch 2: Invalid loss, terminating training" in capsys.readouterr().err
    assert term.error is not None and (term.error.epoch, term.error.step) == (0, 2)
    assert m.optimizer.iterations == 2  # the non-finite step 2 was not applied
    assert hist.epoch == [0] and np.isfinite(hist.history["loss"][0])  # the logs of the 2 good steps


def test_terminate_on_nan_without_the_check_watches_the_batch_loss(capsys):
    m, (x, y), term = small_model(), data(n=40), callbacks.TerminateOnNaN()
    hist = m.fit(
        x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[_Poison(1), term], stop_on_nonfinite=False
    )
    assert "Batch 2: Invalid loss" in capsys.readouterr().err
    assert m.optimizer.iterations == 3 and hist.epoch == [0]  # Keras's: that step ran, then training ended
    assert math.isnan(hist.history["loss"][0])


def test_csv_logger_rows_are_the_history(tmp_path):
    path = tmp_path / "log.csv"
    m, (x, y) = small_model(), data()
    hist = m.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=2,
        verbose=0,
        validation_data=data(2, 6),
        callbacks=[callbacks.CSVLogger(path)],
    )
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keys = ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert rows[0] == ["epoch", *keys]
    for e in range(2):
        assert rows[1 + e] == [str(e)] + [str(hist.history[k][e]) for k in keys]
    m.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[callbacks.CSVLogger(path, append=True)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 4 and rows[3][0] == "0" and len(rows[3]) == 3  # no second header; epoch, acc, loss
    m.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[callbacks.CSVLogger(path, separator=";")])
    assert path.read_text().splitlines()[0] == "epoch;accuracy;loss"
