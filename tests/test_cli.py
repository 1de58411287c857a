"""The ``cnnkern`` command line: exit statuses and messages for bad arguments, and train -> evaluate ->
predict end to end on a tiny generated dataset."""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnkern import backends, cli
from cnnkern.datasets import write_idx

from .test_datasets import make_dataset

REPO = Path(__file__).resolve().parents[1]


def run(argv, capsys):
    """(exit status, stdout, stderr) of ``cnnkern <argv>``, whether main returns or argparse exits."""
    try:
        status = cli.main(argv)
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "usage: cnnkern"),
        (["fly"], "invalid choice: 'fly'"),
        (["train", "--backend", "tpu"], "argument --backend: invalid choice: 'tpu'"),
        (["train", "--epochs", "0"], "argument --epochs: must be > 0"),
        (["train", "--epochs", "two"], "argument --epochs: expected a int"),
        (["train", "--batch-size", "-3"], "argument --batch-size: must be > 0"),
        (["train", "--lr", "0"], "argument --lr: must be > 0"),
        (["train", "--threads", "0"], "--threads must be >= 1"),
        (["train", "--verbose", "5"], "argument --verbose: invalid choice"),
        (["evaluate"], "the following arguments are required: MODEL"),
        (["predict", "model.npz"], "the following arguments are required: IMAGES"),
        (["predict", "m", "i", "--labels", "cifar"], "argument --labels: invalid choice"),
    ],
)
def test_bad_arguments_exit_2(argv, message, capsys):
    status, out, err = run(argv, capsys)
    assert status == 2
    assert message in err


def test_unavailable_backend_exits_2_with_its_reason(capsys):
    missing = [n for n in backends.NAMES if backends.probe(n) is not None]
    if not missing:
        pytest.skip("every backend is available here")
    status, _, err = run(["train", "--backend", missing[0]], capsys)
    assert status == 2
    assert f"backend {missing[0]!r} is unavailable: {backends.probe(missing[0])}" in err


def test_bad_environment_backend_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("CNNKERN_BACKEND", "fpga")
    status, _, err = run(["train"], capsys)
    assert status == 2 and "CNNKERN_BACKEND must be one of" in err


def test_plot_without_matplotlib_exits_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    status, _, err = run(["train", "--plot", "x.png"], capsys)
    assert status == 2 and "--plot needs matplotlib" in err


def test_missing_and_corrupt_data_exit_1(tmp_path, capsys):
    status, _, err = run(["train", "--data", str(tmp_path / "nowhere")], capsys)
    assert status == 1 and "nowhere" in err and "does not exist" in err
    make_dataset(tmp_path)
    bad = tmp_path / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x14"))  # 20 labels promised, none there
    status, _, err = run(["train", "--data", str(tmp_path)], capsys)
    assert status == 1 and str(bad) in err and "truncated" in err


def test_missing_model_exits_1(tmp_path, capsys):
    status, _, err = run(["evaluate", str(tmp_path / "none.npz")], capsys)
    assert status == 1 and "no model file" in err
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"junk")
    status, _, err = run(["predict", str(junk), str(junk)], capsys)
    assert status == 1 and "not a saved cnnkern model" in err


def test_train_evaluate_predict_end_to_end(tmp_path, capsys):
    """`cnnkern train` on 64 generated images (default backend), saved, evaluated and used to predict."""
    data = make_dataset(tmp_path / "data", n_train=64, n_test=20)
    model_path = tmp_path / "model.npz"
    argv = [
        "train",
        "--data",
        str(tmp_path / "data"),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--seed",
        "1",
        "--save",
        str(model_path),
        "--verbose",
        "2",
    ]
    try:
        import matplotlib  # noqa: F401

        argv += ["--plot", str(tmp_path / "curves.png")]
    except ImportError:
        print("matplotlib not installed: --plot is exercised only by test_plot_without_matplotlib_exits_2")
    status, out, err = run(argv, capsys)
    assert status == 0, err
    assert "64 train, 20 test images" in out and "Epoch 2/2" in out
    assert "test accuracy:" in out and "images/s" in out and "wall time" in out
    assert model_path.is_file()
    if "--plot" in argv:
        assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    train_acc = float(out.split("test accuracy: ")[1].split()[0])

    status, out, err = run(["evaluate", str(model_path), "--data", str(tmp_path / "data")], capsys)
    assert status == 0, err
    assert float(out.split("test accuracy: ")[1].split()[0]) == train_acc

    np.save(tmp_path / "imgs.npy", data["x_test"][:3])
    status, out, err = run(["predict", str(model_path), str(tmp_path / "imgs.npy")], capsys)
    assert status == 0, err
    rows = [line.split("\t") for line in out.strip().splitlines()]
    assert [r[0] for r in rows] == ["0", "1", "2"]
    from cnnkern.datasets.fashion_mnist import CLASS_NAMES

    assert all(r[1].split(" ", 1)[1] == CLASS_NAMES[int(r[1].split(" ", 1)[0])] for r in rows)

    write_idx(tmp_path / "imgs.idx.gz", data["x_test"][:5])
    status, out2, err = run(
        ["predict", str(model_path), str(tmp_path / "imgs.idx.gz"), "--labels", "none", "--limit", "3"],
        capsys,
    )
    assert status == 0, err
    assert [line.split("\t")[1] for line in out2.strip().splitlines()] == [r[1].split(" ")[0] for r in rows]

    np.save(tmp_path / "bad.npy", np.zeros((2, 32, 32), np.uint8))
    status, _, err = run(["predict", str(model_path), str(tmp_path / "bad.npy")], capsys)
    assert status == 1 and "(N, 28, 28)" in err


def test_info(capsys):
    status, out, _ = run(["info"], capsys)
    assert status == 0
    for name in backends.NAMES:
        assert name in out


def test_info_numba(monkeypatch, capsys):
    reason = backends.probe("numba")
    if reason is not None:
        status, _, err = run(["info", "--numba"], capsys)
        assert status == 1 and reason in err
        return
    from cnnkern.backends import numba as numba_backend

    # compiling every kernel takes minutes on 2 cores; the table is what is under test here
    monkeypatch.setattr(numba_backend, "warmup", lambda: {"conv2d_forward": 1.5, "adam_update": 0.25})
    status, out, _ = run(["info", "--numba"], capsys)
    assert status == 0
    assert "conv2d_forward     1.50" in out and "total" in out and "1.75" in out


def test_info_numba_unavailable(monkeypatch, capsys):
    real = backends.probe
    monkeypatch.setattr(
        backends,
        "probe",
        lambda name: "numba not installed: pip install cnnkern[numba]" if name == "numba" else real(name),
    )
    status, _, err = run(["info", "--numba"], capsys)
    assert status == 1 and "numba not installed: pip install cnnkern[numba]" in err


def test_module_entry_point():
    """`python -m cnnkern.cli` runs main and passes its status to the shell."""
    proc = subprocess.run(
        [sys.executable, "-m", "cnnkern.cli", "train", "--epochs", "-1"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2 and "--epochs" in proc.stderr


def test_keras_example_runs(tmp_path):
    """examples/keras_cnn.py, unchanged, on a tiny dataset found through CNNKERN_DATA."""
    make_dataset(tmp_path / "fashion-mnist", n_train=32, n_test=16)
    env = {
        **os.environ,
        "CNNKERN_DATA": str(tmp_path),
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "keras_cnn.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Total params: 93,322" in proc.stdout and "Epoch 10/10" in proc.stdout
    assert "Test accuracy:" in proc.stdout


# --- issue 12: NaN images, checkpoints and --resume ------------------------------------------------------
def test_predict_refuses_nonfinite_images(tmp_path, capsys):
    """Item 12: predict on NaN images used to exit 0 printing class 0 with probability nan."""
    from cnnkern.cli import classic_cnn

    model_path = tmp_path / "m.npz"
    classic_cnn(seed=0, backend="reference").save(model_path)
    x = np.random.default_rng(0).random((4, 28, 28)).astype(np.float32)
    x[2, 5, 5] = np.nan
    np.save(tmp_path / "nan.npy", x)
    status, out, err = run(
        ["predict", str(model_path), str(tmp_path / "nan.npy"), "--backend", "reference"], capsys
    )
    assert status == 1 and out == ""
    assert "nan.npy" in err and "image 2" in err and "NaN" in err


def test_checkpoint_arguments_exit_2(tmp_path, capsys):
    ck = tmp_path / "run.ckpt"
    status, _, err = run(["train", "--resume"], capsys)
    assert status == 2 and "--resume needs --checkpoint" in err
    status, _, err = run(["train", "--resume", "--checkpoint", str(ck)], capsys)
    assert status == 2 and "no checkpoint at" in err
    ck.write_bytes(b"x")
    status, _, err = run(["train", "--checkpoint", str(ck)], capsys)
    assert status == 2 and "pass --resume" in err
    status, _, err = run(["train", "--checkpoint-every", "0"], capsys)
    assert status == 2 and "--checkpoint-every" in err


def _train_argv(data_dir, *extra):
    return [
        sys.executable,
        "-m",
        "cnnkern.cli",
        "train",
        "--data",
        str(data_dir),
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--seed",
        "3",
        "--verbose",
        "0",
        "--backend",
        "cpp",
        *extra,
    ]


def test_train_resume_after_kill_9(tmp_path):
    """Item 13 through the command line: `cnnkern train --checkpoint C --checkpoint-every 1` killed with
    SIGKILL mid-run, then `--resume`, saves the model an uninterrupted run saves, bitwise."""
    import random
    import time

    from cnnkern import models

    from .conftest import load_backend, subprocess_env

    load_backend("cpp")
    make_dataset(tmp_path / "data", n_train=96, n_test=8)
    env = subprocess_env()
    full = subprocess.run(
        _train_argv(tmp_path / "data", "--save", str(tmp_path / "full.npz")),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert full.returncode == 0, full.stderr
    ck = tmp_path / "run.ckpt"
    seed = int.from_bytes(os.urandom(4), "little")
    rnd = random.Random(seed)
    for attempt in range(5):  # a kill that comes too late (the run already done) is tried again, sooner
        ck.unlink(missing_ok=True)
        child = subprocess.Popen(
            _train_argv(tmp_path / "data", "--checkpoint", str(ck), "--checkpoint-every", "1"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        while not ck.exists() and child.poll() is None:
            time.sleep(0.002)
        time.sleep(rnd.uniform(0.0, 0.2) / (attempt + 1))
        child.kill()
        child.wait(timeout=60)
        child.stderr.close()
        if child.returncode == -9:
            break
    why = f"(random seed {seed}, attempt {attempt})"
    assert child.returncode == -9, f"never killed mid-run {why}"
    resumed = subprocess.run(
        _train_argv(
            tmp_path / "data", "--checkpoint", str(ck), "--resume", "--save", str(tmp_path / "r.npz")
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr + why
    assert f"resumed from {ck} at epoch" in resumed.stdout, why
    a = models.load_model(tmp_path / "full.npz", backend="cpp").get_weights()
    b = models.load_model(tmp_path / "r.npz", backend="cpp").get_weights()
    for wa, wb in zip(a, b):
        assert wa.tobytes() == wb.tobytes(), why
    acc = [out.split("test accuracy: ")[1].split()[0] for out in (full.stdout, resumed.stdout)]
    assert acc[0] == acc[1]


def test_train_stops_on_a_nonfinite_loss_exit_1(tmp_path, capsys):
    """Item 12 through the command line: an absurd learning rate makes the loss NaN at step 2; the run stops
    there with exit status 1 and the epoch, step and likely causes, instead of training on in NaN."""
    make_dataset(tmp_path / "data", n_train=64, n_test=8)
    argv = ["train", "--data", str(tmp_path / "data"), "--lr", "1e30", "--epochs", "1", "--verbose", "0"]
    status, out, err = run(argv + ["--batch-size", "16", "--save", str(tmp_path / "m.npz")], capsys)
    assert status == 1 and "training stopped at epoch 1, step 2" in err and "learning rate" in err
    assert not (tmp_path / "m.npz").exists()


def test_evaluate_a_model_saved_without_metrics(tmp_path, capsys):
    """A model saved compiled without the accuracy metric used to crash `cnnkern evaluate` (its evaluate
    returned the loss alone, unpacked into loss and accuracy)."""
    from cnnkern.cli import classic_cnn

    make_dataset(tmp_path / "data", n_train=16, n_test=8)
    model = classic_cnn(seed=0, backend="reference")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.save(tmp_path / "m.npz")
    argv = ["evaluate", str(tmp_path / "m.npz"), "--data", str(tmp_path / "data"), "--backend", "reference"]
    status, out, err = run(argv, capsys)
    assert status == 0, err
    assert "test accuracy:" in out


def test_bench_threads_beyond_the_pool_limit_exit_2(capsys):
    """`cnnkern bench --threads` beyond the cpp pool's limit used to end in a raw ValueError traceback."""
    if backends.probe("cpp") is not None:
        pytest.skip(f"cpp backend unavailable: {backends.probe('cpp')}")
    top = backends.get("cpp").max_threads()
    status, _, err = run(["bench", "--backends", "cpp", "--threads", str(top + 1), "--quick"], capsys)
    assert status == 2
    assert "--threads" in err and f"limit of {top} threads" in err
