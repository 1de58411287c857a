"""Issue 12 item 13: checkpoints and resume. A run interrupted at any step (an exception in-process, or
``kill -9`` of a child process) and resumed from its last checkpoint ends with the weights of an
uninterrupted run, bitwise, on the same backend; the checkpoint format (cnnkern.checkpoint) refuses files of
another model, other data or other callbacks, and never loads pickles."""

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cnnkern import callbacks, checkpoint, layers, models, optimizers
from cnnkern.errors import CheckpointError

from .conftest import load_backend, subprocess_env

N, BATCH, EPOCHS = 36, 8, 3  # 5 steps per epoch, the last one short: 15 steps


def small_model(backend, seed=1, opt="adam", lr=1e-2):
    """Conv, batch norm (running statistics), dropout (the generator), dense; Adam or SGD with momentum."""
    m = models.Sequential(backend=backend, seed=seed)
    m.add(layers.Conv2D(3, 3, padding="same", activation="relu", input_shape=(6, 6, 1)))
    m.add(layers.BatchNormalization())
    m.add(layers.MaxPooling2D(2))
    m.add(layers.Flatten())
    m.add(layers.Dropout(0.3))
    m.add(layers.Dense(4, activation="softmax"))
    m.compile(
        optimizer=optimizers.Adam(lr) if opt == "adam" else optimizers.SGD(lr, momentum=0.9),
        metrics=["accuracy"],
    )
    return m


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, 6, 6, 1)).astype(np.float32), rng.integers(0, 4, N)


class Interrupt(Exception):
    pass


class StopAt(callbacks.Callback):
    """Raise Interrupt after global step ``k`` (1-based) has been applied."""

    def __init__(self, k):
        self.k, self.seen = k, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.k:
            raise Interrupt


def early_stopping():
    # patience large enough never to stop here, so its best / wait evolve and must survive the resume
    return callbacks.EarlyStopping(monitor="loss", patience=10, restore_best_weights=True)


def run(backend, tmp, stop_at=None, save_freq=1, opt="adam", epochs=EPOCHS):
    m = small_model(backend, opt=opt)
    x, y = data()
    backup = callbacks.BackupAndRestore(tmp, save_freq=save_freq)
    cbs = [early_stopping(), backup] + ([StopAt(stop_at)] if stop_at else [])
    h = m.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=cbs)
    return m, h, backup


@pytest.fixture(params=["reference", "cpp"])
def backend(request):
    return load_backend(request.param)


def assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes()


# StopAt raises in step k's on_train_batch_end, before the backup writes step k: the run resumes from the
# last checkpoint before it, (epoch, steps of it done); 5 steps per epoch
@pytest.mark.parametrize(
    "save_freq, stop_at, restored",
    [
        (1, 2, (0, 1)),
        (1, 5, (0, 4)),
        (1, 6, (0, 5)),
        (1, 7, (1, 1)),
        (1, 14, (2, 3)),
        (2, 9, (1, 3)),
        ("epoch", 8, (1, 0)),
    ],
)
@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_interrupted_and_resumed_equals_uninterrupted(backend, tmp_path, save_freq, stop_at, restored, opt):
    full, h_full, _ = run(backend, tmp_path / "full", opt=opt)
    assert not (tmp_path / "full" / "checkpoint.npz").exists()  # delete_checkpoint=True on success
    with pytest.raises(Interrupt):
        run(backend, tmp_path / "cut", stop_at=stop_at, save_freq=save_freq, opt=opt)
    assert (tmp_path / "cut" / "checkpoint.npz").exists()
    resumed, h, backup = run(backend, tmp_path / "cut", save_freq=save_freq, opt=opt)
    assert backup.restored_from == restored
    assert_same_weights(full, resumed)
    assert resumed.optimizer.iterations == full.optimizer.iterations == 15
    assert h.history == h_full.history and h.epoch == h_full.epoch == [0, 1, 2]


def test_interrupted_and_resumed_equals_uninterrupted_numba(tmp_path):
    """One mid-epoch case on numba in-process (its steps are slow on a loaded machine; the kill -9 test below
    covers it too)."""
    be = load_backend("numba")
    full, h_full, _ = run(be, tmp_path / "full")
    with pytest.raises(Interrupt):
        run(be, tmp_path / "cut", stop_at=7)
    resumed, h, backup = run(be, tmp_path / "cut")
    assert backup.restored_from == (1, 1)
    assert_same_weights(full, resumed)
    assert h.history == h_full.history


def test_resume_with_more_epochs_continues(backend, tmp_path):
    full, _, _ = run(backend, tmp_path / "a", epochs=3)
    m = small_model(backend)
    x, y = data()
    keep = callbacks.BackupAndRestore(tmp_path / "b", save_freq="epoch", delete_checkpoint=False)
    m.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[early_stopping(), keep])
    m2 = small_model(backend)
    keep2 = callbacks.BackupAndRestore(tmp_path / "b", save_freq="epoch")
    m2.fit(x, y, batch_size=BATCH, epochs=3, verbose=0, callbacks=[early_stopping(), keep2])
    assert keep2.restored_from == (2, 0)
    assert_same_weights(full, m2)


def test_checkpoint_refuses_another_model_data_or_callbacks(tmp_path):
    with pytest.raises(Interrupt):
        run("reference", tmp_path, stop_at=3)
    x, y = data()
    cases = [
        (small_model("reference", lr=0.5), x, y, [early_stopping()], "compile.optimizer.learning_rate"),
        (small_model("reference"), x + 1, y, [early_stopping()], "data_crc32"),
        (small_model("reference"), x, y, [], "callbacks"),
    ]
    for m, xx, yy, cbs, match in cases:
        before = m.get_weights()
        with pytest.raises(CheckpointError, match=match) as info:
            m.fit(
                xx,
                yy,
                batch_size=BATCH,
                epochs=1,
                verbose=0,
                callbacks=cbs + [callbacks.BackupAndRestore(tmp_path)],
            )
        assert str(tmp_path / "checkpoint.npz") in str(info.value)
        for a, b in zip(before, m.get_weights()):  # nothing was changed before the checks passed
            np.testing.assert_array_equal(a, b)
    with pytest.raises(CheckpointError, match="batch_size"):
        small_model("reference").fit(
            x,
            y,
            batch_size=4,
            epochs=1,
            verbose=0,
            callbacks=[early_stopping(), callbacks.BackupAndRestore(tmp_path)],
        )


def test_checkpoint_format(tmp_path):
    with pytest.raises(Interrupt):
        run("reference", tmp_path, stop_at=7)
    path = tmp_path / "checkpoint.npz"
    meta, arrays = checkpoint.read(path)
    assert meta["format"] == "cnnkern-checkpoint" and meta["version"] == checkpoint.VERSION == 1
    assert meta["progress"] == {"epoch": 1, "step": 1, "stop_training": False}
    assert meta["optimizer"]["iterations"] == 6 and meta["rng"]["bit_generator"] == "PCG64"
    assert [c["class"] for c in meta["callbacks"]] == ["History", "EarlyStopping"]
    assert arrays["order"].shape == (N,) and sorted(arrays["order"]) == list(range(N))
    assert {k.split("/")[0] for k in arrays} == {
        "weights",
        "optimizer",
        "order",
        "loss_sum",
        "correct",
        "callbacks",
    }
    with np.load(path, allow_pickle=False) as f:  # plain arrays only
        assert all(f[k].dtype != object for k in f.files)
    # a pickle inside is refused, not loaded
    bad = tmp_path / "pickled.npz"
    np.savez(bad, __checkpoint__=np.array(json.dumps(meta)), evil=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="pickled.npz"):
        checkpoint.read(bad)
    other = tmp_path / "other.npz"
    np.savez(other, __checkpoint__=np.array(json.dumps({**meta, "version": 99})))
    with pytest.raises(CheckpointError, match="version"):
        checkpoint.read(other)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.read(tmp_path / "none.npz")


def test_backup_and_restore_arguments(tmp_path):
    for bad in (0, -1, "batch", 1.5, True):
        with pytest.raises(ValueError, match="save_freq"):
            callbacks.BackupAndRestore(tmp_path, save_freq=bad)
    with pytest.raises(ValueError, match="filename"):
        callbacks.BackupAndRestore(tmp_path, filename="a/b")


# --- kill -9 in a child process -----------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from cnnkern import callbacks
    from tests.test_checkpoint import BATCH, EPOCHS, data, early_stopping, small_model

    backend, backup_dir, out = sys.argv[1:4]

    class Progress(callbacks.Callback):  # tells the parent where training is; slows it so a kill lands inside
        def on_train_batch_end(self, batch, logs=None):
            print("step", flush=True)
            time.sleep(0.02)

    m = small_model(backend)
    x, y = data()
    backup = callbacks.BackupAndRestore(backup_dir, save_freq=1)
    m.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=[early_stopping(), backup, Progress()])
    np.savez(out, *m.get_weights())
    print("restored_from", backup.restored_from, flush=True)
    """
)


def _child(backend, backup_dir, out):
    return [sys.executable, "-c", CHILD, backend, str(backup_dir), str(out)]


@pytest.mark.parametrize("backend_name", ["reference", "cpp", "numba"])
def test_kill_9_during_fit_then_resume_gives_the_same_weights(backend_name, tmp_path):
    load_backend(backend_name)  # skips with the reason when the backend cannot run here
    env = subprocess_env()
    full = subprocess.run(
        _child(backend_name, tmp_path / "full", tmp_path / "full.npz"),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert full.returncode == 0, full.stderr
    total = full.stdout.count("step")
    assert total == 15
    seed = int.from_bytes(os.urandom(4), "little")
    rnd = random.Random(seed)
    for attempt in range(4):  # a kill that comes too late (a loaded machine: the child already done) retries
        shutil.rmtree(tmp_path / "cut", ignore_errors=True)
        # from the second "step" line on: fit writes step k's checkpoint after the callbacks' step-k line
        # (and the 20 ms sleep), so only once step k+1's line is out is at least one checkpoint whole; a
        # kill after the first line can land inside the first write, which leaves nothing to resume from
        kill_after = rnd.randint(2, max(2, total - 2 - 3 * attempt))
        # within the 20 ms sleep, or on into the checkpoint write and the next step
        delay = rnd.uniform(0.0, 0.04)
        why = f"(random seed {seed}, attempt {attempt}: kill after step {kill_after} + {delay * 1000:.1f} ms)"
        child = subprocess.Popen(
            _child(backend_name, tmp_path / "cut", tmp_path / "cut.npz"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            seen = 0
            while seen < kill_after:
                line = child.stdout.readline()
                assert line, f"child ended early {why}: {child.stderr.read()}"
                seen += line.startswith("step")
            time.sleep(delay)
            child.kill()  # SIGKILL: no handler, no cleanup
            child.wait(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
            child.stderr.close()
        if child.returncode == -9:
            break
        (tmp_path / "cut.npz").unlink(missing_ok=True)
    assert child.returncode == -9, f"never killed mid-run {why}"
    assert not (tmp_path / "cut.npz").exists(), why
    resumed = subprocess.run(
        _child(backend_name, tmp_path / "cut", tmp_path / "cut.npz"),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr + why
    # it really resumed (a fresh start with the same seed would also match): from a step >= 1
    restored = resumed.stdout.split("restored_from")[1].strip()
    assert restored != "None", why
    epoch, step = eval(restored)
    assert 1 <= epoch * 5 + step < total, why
    assert resumed.stdout.count("step") == total - (epoch * 5 + step), why
    a, b = np.load(tmp_path / "full.npz"), np.load(tmp_path / "cut.npz")
    assert a.files == b.files
    for k in a.files:
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs {why}"
