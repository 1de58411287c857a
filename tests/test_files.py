"""Issue 12 items 10 and 11: every file cnnkern writes is replaced atomically, and a saved model is read as
untrusted input (validated before anything of its size is allocated, errors naming the file and layer)."""

import numpy as np
import pytest

from cnnkern import callbacks, layers, models

from .test_models import tiny_cnn


# --- issue 12 item 11: every file the library writes is replaced atomically ------------------------------
def _writers():
    """(name, write(path)) for each kind of file cnnkern writes."""
    from cnnkern import cli
    from cnnkern.bench import report
    from cnnkern.datasets import write_idx

    def plot(path):
        pytest.importorskip("matplotlib", reason="the plot writers need matplotlib")
        h = callbacks.History()
        h.epoch, h.history = [0, 1], {"loss": [1.0, 0.5], "accuracy": [0.5, 0.7]}
        cli._plot(h, path)

    return [
        ("model", lambda path: tiny_cnn().save(path)),
        ("idx", lambda path: write_idx(path, np.arange(10, dtype=np.uint8))),
        ("idx.gz", lambda path: write_idx(path, np.arange(10, dtype=np.uint8), compress=True)),
        ("bench-json", lambda path: report.write_json({"a": 1}, path)),
        ("cli-plot", plot),
    ]


@pytest.mark.parametrize("kind", [w[0] for w in _writers()])
def test_a_failed_write_leaves_the_previous_file(kind, tmp_path, monkeypatch):
    """A full disk at the last moment (fsync failing with ENOSPC) must leave the previous file whole and no
    temporary file behind; the old code wrote in place, truncating the file first."""
    import errno
    import os

    write = dict(_writers())[kind]
    path = tmp_path / f"out-{kind}.png"  # the plot writers take the format from the suffix
    path.write_bytes(b"previous contents")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write(path)
    assert path.read_bytes() == b"previous contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    monkeypatch.undo()
    write(path)  # and a write that succeeds replaces it
    assert path.read_bytes() != b"previous contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_atomic_write_keeps_the_old_file_on_an_exception(tmp_path):
    from cnnkern._io import atomic_write

    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_write(path) as f:
            f.write(b"half of the new")
            raise RuntimeError("crash in the middle")
    assert path.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1
    with atomic_write(path, "w") as f:
        f.write("new")
    assert path.read_text() == "new" and oct(path.stat().st_mode & 0o777) != "0o600"


# --- issue 12 item 10: model files are validated before anything of their size is allocated --------------
def _dense_model():
    m = models.Sequential(seed=0)
    m.add(layers.Flatten(input_shape=(4, 4, 1)))
    m.add(layers.Dense(3, activation="relu", name="hidden"))
    m.add(layers.Dense(2, activation="softmax", name="out"))
    m.compile(metrics=["accuracy"])
    m.build()
    return m


def _crafted(tmp_path, edit_arch=None, edit_weights=None, name="crafted.npz"):
    """A saved model file with its architecture JSON and/or weight arrays edited."""
    import json

    src = tmp_path / "good.npz"
    _dense_model().save(src)
    with np.load(src) as f:
        arrays = {k: f[k] for k in f.files}
    cfg = json.loads(str(arrays.pop("__architecture__")))
    if edit_arch:
        edit_arch(cfg)
    if edit_weights:
        edit_weights(arrays)
    path = tmp_path / name
    np.savez(path, __architecture__=np.array(json.dumps(cfg)), **arrays)
    return path


def _set(layer, key, value):
    def edit(cfg):
        cfg["layers"][layer]["config"][key] = value

    return edit


@pytest.mark.parametrize(
    "edit_arch, edit_weights, match",
    [
        (
            _set(1, "units", 10**12),
            None,
            r"layer 1 \(Dense 'hidden'\): units must be an int in \[1, 1048576\]",
        ),
        (
            lambda c: c.update(input_shape=[1024, 1024, 1]) or _set(1, "units", 2**20)(c),
            None,
            r"layer 1 \(Dense 'hidden'\): the weights reach 1,099,511,627,776 elements",
        ),
        (lambda c: c["layers"][2]["config"].pop("name"), None, r"layer 2 \(Dense None\): .*lacks .*'name'"),
        (lambda c: c["layers"][1]["config"].pop("units"), None, r"layer 1 .*lacks .*'units'"),
        (_set(1, "kernel_size", 3), None, r"layer 1 .*unknown config key\(s\) 'kernel_size'"),
        (_set(1, "activation", "gelu"), None, r"layer 1 .*activation must be one of"),
        (_set(1, "use_bias", "yes"), None, r"layer 1 .*use_bias must be true or false"),
        (
            lambda c: c["layers"][0].update(class_name="Lambda"),
            None,
            r"layer 0: unknown layer class 'Lambda'",
        ),
        (lambda c: c.pop("layers"), None, r"lacks 'layers'"),
        (lambda c: c.update(dtype="int8"), None, r"dtype must be one of 'float32', 'float64'"),
        (lambda c: c.update(input_shape=[4, 4]), None, r"input_shape must be a list"),
        (_set(2, "name", "hidden"), None, r"'hidden' used more than once"),
        (_set(2, "input_shape", [3]), None, r"input_shape is only allowed on the first layer"),
        (lambda c: c["compile"]["optimizer"].update(learning_rate=-1), None, r"bad compile settings"),
        (
            None,
            lambda a: a.update({"001.hidden/kernel": a["001.hidden/kernel"].astype(np.int64)}),
            r"entry 001.hidden/kernel \(layer 001.hidden\): dtype int64, expected float32",
        ),
        (
            None,
            lambda a: a.update({"001.hidden/kernel": np.zeros((3, 15), np.float32)}),
            r"shape \(3, 15\), the architecture needs \(3, 16\)",
        ),
        (None, lambda a: a.pop("002.out/bias"), r"missing 002.out/bias"),
        (None, lambda a: a.update(extra=np.zeros(2, np.float32)), r"not in the architecture: extra"),
        (None, lambda a: a.update({"002.out/bias": np.array([{"x": 1}, None], dtype=object)}), r"pickle"),
    ],
)
def test_load_model_validates_before_building(tmp_path, edit_arch, edit_weights, match):
    path = _crafted(tmp_path, edit_arch, edit_weights)
    with pytest.raises(ValueError, match=match) as info:
        models.load_model(path, backend="reference")
    assert str(info.value).startswith(str(path))


def test_load_model_still_loads_what_save_writes(tmp_path):
    m = _dense_model()
    path = _crafted(tmp_path)
    loaded = models.load_model(path, backend="reference")
    for a, b in zip(m.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_absurd_sizes_built_from_python_are_refused_naming_the_layer():
    """The same size bounds hold for a model built in Python: a clear ValueError, not numpy's MemoryError."""
    m = models.Sequential([layers.Dense(10**12, input_shape=(4,), name="huge")])
    with pytest.raises(ValueError, match=r"layer 0 \(Dense 'huge'\): the weights reach 4,000,000,000,000"):
        m.build()
    assert not m.built
    m = models.Sequential([layers.Conv2D(8, 3, padding="same", input_shape=(65536, 65536, 1), name="wide")])
    with pytest.raises(ValueError, match=r"layer 0 \(Conv2D 'wide'\): outputs 34,359,738,368 values"):
        m.build()


def test_atomic_write_writes_through_a_symlink(tmp_path):
    from cnnkern._io import atomic_write_bytes

    target = tmp_path / "real.bin"
    target.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"


def test_atomic_write_with_a_name_of_the_longest_length(tmp_path):
    from cnnkern._io import atomic_write_bytes

    path = tmp_path / ("n" * 255)
    atomic_write_bytes(path, b"data")
    assert path.read_bytes() == b"data"
