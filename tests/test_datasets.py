"""IDX reading/writing, the dataset loaders (real files, the bundled subset, where files are looked for) and
every way a data file can be broken."""

import gzip
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnkern.datasets import IdxFormatError, fashion_mnist, loader, mnist, read_idx, write_idx

REAL = Path("/usr/share/datasets/fashion-mnist")
REPO = Path(__file__).resolve().parents[1]


def make_dataset(directory, n_train=20, n_test=10, compress=True, seed=0):
    """Four small IDX files of random 28x28 images and labels 0-9 in ``directory``; returns the arrays."""
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for key, stem in loader.FILES:
        write_idx(directory / (stem + (".gz" if compress else "")), arrays[key])
    return arrays


@pytest.fixture
def no_system_data(monkeypatch, tmp_path):
    """No CNNKERN_DATA and an empty system directory: the situation of a machine without the data."""
    monkeypatch.delenv("CNNKERN_DATA", raising=False)
    monkeypatch.setattr(loader, "SYSTEM_ROOT", tmp_path / "empty-system-root")


# --- the IDX format -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    a = (
        (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
        if dtype != "uint8"
        else np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    )
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, a)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    b = read_idx(path)
    assert b.dtype == a.dtype and b.dtype.isnative
    np.testing.assert_array_equal(a, b)


def test_idx_header_is_big_endian(tmp_path):
    path = tmp_path / "labels"
    write_idx(path, np.array([1, 2, 3], np.uint8))
    assert path.read_bytes() == bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 1, 2, 3])


def test_idx_write_refuses_unsupported_dtype(tmp_path):
    with pytest.raises(TypeError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))


def _good_bytes():
    return bytes([0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2]) + bytes(range(8))


@pytest.mark.parametrize(
    "name, payload, match",
    [
        ("truncated-payload", _good_bytes()[:-1], "truncated"),
        ("trailing", _good_bytes() + b"\x00", "trailing bytes"),
        ("bad-magic", b"\x01\x02" + _good_bytes()[2:], "bad IDX magic"),
        ("bad-type", bytes([0, 0, 0x07]) + _good_bytes()[3:], "bad IDX magic"),
        ("short-header", _good_bytes()[:9], "header cut short"),
        ("tiny", b"\x00\x00", "too short"),
        ("empty", b"", "too short"),
    ],
)
def test_idx_broken_files_raise_naming_the_file(tmp_path, name, payload, match):
    for path, data in ((tmp_path / name, payload), (tmp_path / (name + ".gz"), gzip.compress(payload))):
        path.write_bytes(data)
        with pytest.raises(IdxFormatError, match=match) as info:
            read_idx(path)
        assert str(path) in str(info.value)


def test_idx_bad_gzip(tmp_path):
    not_gzip = tmp_path / "plain-named.gz"
    not_gzip.write_bytes(_good_bytes())
    with pytest.raises(IdxFormatError, match="not gzip") as info:
        read_idx(not_gzip)
    assert str(not_gzip) in str(info.value)

    # a consistent file (header and payload agree) whose gzip stream is then damaged
    data = gzip.compress(bytes([0, 0, 0x08, 1, 0, 0, 3, 32]) + bytes(range(256)) * 3)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(IdxFormatError, match="corrupt or truncated gzip") as info:
        read_idx(cut)
    assert str(cut) in str(info.value)

    flipped = bytearray(data)
    flipped[-6] ^= 0xFF  # inside the CRC-32 trailer
    bad_crc = tmp_path / "crc.gz"
    bad_crc.write_bytes(bytes(flipped))
    with pytest.raises(IdxFormatError, match="gzip"):
        read_idx(bad_crc)


def test_idx_gzip_bomb_is_not_inflated(tmp_path):
    """Issue 12 item 9: 10 labels declared, then 64 MiB of zeros in a 64 KiB gzip file. The old reader
    inflated all of it before noticing; decompression must stop right after the declared payload."""
    import tracemalloc

    header = bytes([0, 0, 0x08, 1, 0, 0, 0, 10])
    bomb = tmp_path / "bomb-idx1-ubyte.gz"
    bomb.write_bytes(gzip.compress(header + bytes(64 << 20), compresslevel=9))
    assert bomb.stat().st_size < 128 << 10
    tracemalloc.start()
    try:
        with pytest.raises(IdxFormatError, match="trailing") as info:
            read_idx(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(bomb) in str(info.value)
    assert peak < 8 << 20, f"reading a 64 KiB file peaked at {peak / 2**20:.0f} MiB"


def test_idx_declared_size_bound_and_int64_wrap(tmp_path):
    """Item 9: 65536**4 wraps to 0 in int64, so the old size check passed an empty payload and numpy's
    reshape failed naming no file. Sizes are Python ints now, bounded, and the error names the file."""
    wrap = tmp_path / "wrap"
    wrap.write_bytes(bytes([0, 0, 0x08, 4]) + (65536).to_bytes(4, "big") * 4)
    with pytest.raises(IdxFormatError, match="over the limit") as info:
        read_idx(wrap)
    assert str(wrap) in str(info.value) and "18,446,744,073,709,551,616" in str(info.value)
    # within the bound but not there: refused from the header and the file size, nothing allocated
    big = tmp_path / "big.gz"
    big.write_bytes(gzip.compress(bytes([0, 0, 0x0D, 1]) + (1 << 29).to_bytes(4, "big") + bytes(100)))
    with pytest.raises(IdxFormatError, match="truncated") as info:
        read_idx(big)
    assert str(big) in str(info.value)
    small = tmp_path / "small"
    write_idx(small, np.arange(100, dtype=np.uint8))
    with pytest.raises(IdxFormatError, match="over the limit"):
        read_idx(small, max_bytes=99)
    np.testing.assert_array_equal(read_idx(small, max_bytes=100), np.arange(100))


def test_idx_wrong_number_of_dimensions(tmp_path):
    path = tmp_path / "labels"
    write_idx(path, np.zeros(4, np.uint8))
    with pytest.raises(IdxFormatError, match="1-D array, expected 3-D"):
        read_idx(path, ndim=3)


# --- directory loading and its checks -----------------------------------------------------------------------
@pytest.mark.parametrize("compress", [True, False])
def test_load_directory(tmp_path, compress):
    want = make_dataset(tmp_path, compress=compress)
    (x, y), (xt, yt) = mnist.load_data(tmp_path)
    for got, key in ((x, "x_train"), (y, "y_train"), (xt, "x_test"), (yt, "y_test")):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want[key])


def test_load_directory_errors_name_the_problem(tmp_path):
    make_dataset(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        mnist.load_data(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(7, np.uint8))  # 10 images, 7 labels
    with pytest.raises(IdxFormatError, match="10 images but .*7 labels"):
        mnist.load_data(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(10, 10, np.uint8))
    with pytest.raises(IdxFormatError, match="label 10"):
        mnist.load_data(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(10, np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((10, 27, 28), np.uint8))
    with pytest.raises(IdxFormatError, match="27x28, expected 28x28"):
        mnist.load_data(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((10, 28, 28), np.float32))
    with pytest.raises(IdxFormatError, match="float32 values, expected uint8"):
        mnist.load_data(tmp_path)


def test_load_truncated_real_style_file(tmp_path):
    make_dataset(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(IdxFormatError, match="truncated") as info:
        fashion_mnist.load_data(tmp_path)
    assert str(path) in str(info.value)


def test_explicit_path_never_falls_back(tmp_path, no_system_data):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fashion_mnist.load_data(tmp_path / "nowhere")


def test_cnnkern_data_env(tmp_path, monkeypatch):
    want = make_dataset(tmp_path / "fashion-mnist", n_train=30)
    monkeypatch.setenv("CNNKERN_DATA", str(tmp_path))
    (x, _), _ = fashion_mnist.load_data()
    np.testing.assert_array_equal(x, want["x_train"])
    direct = make_dataset(tmp_path / "direct", n_train=12, seed=1)
    monkeypatch.setenv("CNNKERN_DATA", str(tmp_path / "direct"))
    (x, _), _ = fashion_mnist.load_data()
    np.testing.assert_array_equal(x, direct["x_train"])
    monkeypatch.setenv("CNNKERN_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="missing"):
        fashion_mnist.load_data()


def test_falls_back_to_bundled_subset_with_a_warning(no_system_data):
    with pytest.warns(UserWarning, match="bundled"):
        (x, y), (xt, yt) = fashion_mnist.load_data()
    assert x.shape == (9000, 28, 28) and xt.shape == (2000, 28, 28)


def test_mnist_has_no_fallback(no_system_data):
    with pytest.raises(FileNotFoundError, match="mnist"):
        mnist.load_data()


# --- the bundled subset -------------------------------------------------------------------------------------
def test_bundled_subset_is_small_stratified_and_valid():
    size = sum(p.stat().st_size for p in fashion_mnist.BUNDLED_DIR.iterdir())
    assert size <= 5_000_000, f"bundled data is {size} bytes"
    (x, y), (xt, yt) = fashion_mnist.load_data(subset=True)
    assert x.dtype == np.uint8 and y.dtype == np.uint8
    assert x.shape == (9000, 28, 28) and y.shape == (9000,)
    assert xt.shape == (2000, 28, 28) and yt.shape == (2000,)
    assert np.bincount(y, minlength=10).tolist() == [900] * 10
    assert np.bincount(yt, minlength=10).tolist() == [200] * 10
    assert x.std() > 50  # real pictures, not blanks


def _skip_without_real_data():
    if not REAL.is_dir():
        pytest.skip(f"full Fashion-MNIST not installed at {REAL} (Debian package dataset-fashion-mnist)")


def test_real_fashion_mnist(monkeypatch):
    _skip_without_real_data()
    monkeypatch.delenv("CNNKERN_DATA", raising=False)
    (x, y), (xt, yt) = fashion_mnist.load_data()
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8
    assert xt.shape == (10000, 28, 28) and yt.dtype == np.uint8
    assert np.bincount(y).tolist() == [6000] * 10 and np.bincount(yt).tolist() == [1000] * 10


def test_make_subset_reproduces_the_bundled_files(tmp_path):
    """scripts/make_subset.py with its defaults writes exactly the bundled bytes, and every bundled image is
    one of the real ones with its real label."""
    _skip_without_real_data()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_subset.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        env=env,
    )
    for _, stem in loader.FILES:
        name = stem + ".gz"
        assert (tmp_path / name).read_bytes() == (fashion_mnist.BUNDLED_DIR / name).read_bytes(), name
    (x_full, y_full), _ = loader.load_directory(REAL)
    (x_sub, y_sub), _ = fashion_mnist.load_data(subset=True)
    full = {hashlib.sha1(img.tobytes()).digest(): label for img, label in zip(x_full, y_full)}
    assert all(full.get(hashlib.sha1(img.tobytes()).digest()) == label for img, label in zip(x_sub, y_sub))
