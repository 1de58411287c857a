"""``cnnkern bench --model FILE``: a tiny float model and its int8 quantization, saved with the public API,
timed side by side in a subprocess (rows, columns, ratios, JSON samples); files that cannot be read and
options that do not apply are refused, naming the path or the option."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cnnkern import backends, layers, models
from cnnkern.bench import saved
from cnnkern.compress import quantize

from .conftest import subprocess_env
from .test_cli import REPO, run

# the reference backend always runs; cpp beside it where it is built
BACKENDS = ["reference"] + (["cpp"] if backends.probe("cpp") is None else [])
TINY = ["--batch", "1,3", "--repeat", "1", "--quick", "--threads", "1", "--backends", ",".join(BACKENDS)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(float file, int8 file) of a conv > pool > dense model on 8x8x1 inputs."""
    d = tmp_path_factory.mktemp("models")
    m = models.Sequential(backend="reference", seed=3)
    m.add(layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)))
    m.add(layers.MaxPooling2D(2))
    m.add(layers.Flatten())
    m.add(layers.Dense(5, activation="softmax"))
    m.build()
    m.save(d / "m.npz")
    quantize(m, np.random.default_rng(1).random((16, 8, 8, 1), dtype=np.float32)).save(d / "m8.npz")
    return str(d / "m.npz"), str(d / "m8.npz")


def _bench(*argv):
    return subprocess.run(
        [sys.executable, "-m", "cnnkern", "bench", *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=subprocess_env(),
        timeout=300,
    )


def _rows(out):
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("file"))
    body = [line.split() for line in lines[head + 1 :] if line.split() and line.split()[0].endswith(".npz")]
    return lines[head].split(), body


def test_float_and_int8_files_side_by_side(files, tmp_path):
    m, m8 = files
    proc = _bench("--model", m, "--model", m8, *TINY, "--json", str(tmp_path / "out.json"))
    assert proc.returncode == 0, proc.stderr
    head, rows = _rows(proc.stdout)
    assert head == [
        "file",
        "format",
        "backend",
        "batch",
        "median",
        "ms",
        "IQR",
        "ms",
        "images/s",
        "vs",
        "first",
    ]
    want = [(f, k, be, b) for b in ("1", "3") for f, k in ((m, "float32"), (m8, "int8")) for be in BACKENDS]
    assert [tuple(r[:4]) for r in rows] == want
    with open(tmp_path / "out.json") as f:
        data = json.load(f)
    assert [r["batch"] for r in data["models"]] == [1, 3] and data["failed"] == []
    for rec, printed in zip(data["models"], (rows[: len(rows) // 2], rows[len(rows) // 2 :])):
        first = rec["candidates"][0]["median_s"]
        for c, r in zip(rec["candidates"], printed):
            assert len(c["samples_s"]) == 1 and c["median_s"] == c["samples_s"][0] > 0
            assert c["vs_first"] == pytest.approx(c["median_s"] / first)
            assert float(r[4]) == pytest.approx(c["median_s"] * 1e3, abs=1e-3)
            assert float(r[7]) == pytest.approx(c["vs_first"], abs=0.01)
        assert printed[0][7] == "1.00"


def test_an_int8_file_alone(files):
    proc = _bench("--model", files[1], *TINY[:-2], "--backends", "reference")
    assert proc.returncode == 0, proc.stderr
    head, rows = _rows(proc.stdout)
    assert "vs" not in head  # one candidate: no ratio
    assert [tuple(r[:4]) for r in rows] == [(files[1], "int8", "reference", b) for b in ("1", "3")]
    assert all(float(r[4]) > 0 for r in rows)


def test_files_that_cannot_be_read_exit_1(tmp_path, capsys):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"junk")
    cases = [
        (tmp_path / "none.npz", "no model file there"),
        (junk, "not a saved cnnkern model"),
        (tmp_path, "is a directory, not a model file"),
    ]
    for path, message in cases:
        status, out, err = run(["bench", "--model", str(path), *TINY], capsys)
        assert status == 1 and f"--model {path}" in err and message in err and out == ""


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--zoo"], "--model times the inference of saved model files: it does not combine with --zoo"),
        (["--int8"], "does not combine with --int8"),
        (["--profile", "--only", "steps"], "does not combine with --profile, --only"),
        (
            ["--recipe", "wide-bn"],
            "--recipe times a training run: it does not combine with --zoo, --int8, --model",
        ),
        (["--backends", "reference,torch"], "torch cannot run a cnnkern model file"),
        (["--backends", "tpu"], "unknown backend 'tpu'"),
        (["--repeat", "0"], "--repeat must be >= 1, got 0"),
    ],
)
def test_options_that_do_not_apply_exit_2(files, extra, message, capsys):
    status, _, err = run(["bench", "--model", files[0], *extra], capsys)
    assert status == 2 and message in err


def test_a_file_named_twice_exits_2(files, capsys):
    status, _, err = run(["bench", "--model", files[0], "--model", files[0]], capsys)
    assert status == 2 and f"--model {files[0]} is given twice" in err


def test_a_wrong_result_is_not_timed_exit_1(files, monkeypatch, capsys):
    """A backend whose output differs from the reference's (here: a weight changed after loading) is
    reported and left out of the table."""
    load = saved.load

    def tampered(path, backend):
        model = load(path, backend)
        if backend != "reference":
            model.layers[-1].params["kernel"] *= -1.0
        return model

    if "cpp" not in BACKENDS:
        pytest.skip("the cpp backend is not built here: no second backend to compare with the reference")
    monkeypatch.setattr(saved, "load", tampered)
    status, out, err = run(["bench", "--model", files[0], *TINY], capsys)
    assert status == 1
    assert f"{files[0]} on cpp: outputs differ from the reference backend's" in err
    _, rows = _rows(out)
    assert [r[2] for r in rows] == ["reference", "reference"]
