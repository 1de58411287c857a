"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST (plain or gzip-compressed).

Layout (big-endian): two zero bytes, a type code, the number of dimensions d, then d uint32 sizes, then the
values in C order. Every way a file can be broken (missing, not gzip although named ``.gz``, a gzip stream
cut short, a bad magic, an unknown type code, a header or payload shorter or longer than the sizes say)
raises :class:`IdxFormatError` naming the file; a partly read array is never returned.
"""

import gzip
import os
import struct
import zlib

import numpy as np

# IDX type code -> big-endian NumPy dtype of the stored values
_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in _TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
    """An IDX file that cannot be read as one: the message names the file and what is wrong."""


def _read_bytes(path):
    with open(path, "rb") as f:
        raw = f.read()
    is_gzip = raw[:2] == _GZIP_MAGIC
    if str(path).endswith(".gz") and not is_gzip:
        raise IdxFormatError(
            f"{path}: named .gz but is not gzip data (starts with {raw[:2].hex() or 'nothing'})"
        )
    if not is_gzip:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:  # cut short, bad CRC, corrupt deflate stream
        raise IdxFormatError(
            f"{path}: corrupt or truncated gzip data ({type(exc).__name__}: {exc})"
        ) from None


def read_idx(path, *, ndim=None):
    """The array stored in IDX file ``path`` (gzip detected from its first bytes), in native byte order.

    ``ndim``: the number of dimensions the caller expects; another count is an :class:`IdxFormatError`.
    """
    path = os.fspath(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise IdxFormatError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    zero, code, d = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _TYPES:
        raise IdxFormatError(
            f"{path}: bad IDX magic {raw[:4].hex()} (expected 0000 then a type code among "
            f"{', '.join(f'{c:02x}' for c in _TYPES)} and the number of dimensions)"
        )
    if ndim is not None and d != ndim:
        raise IdxFormatError(f"{path}: holds a {d}-D array, expected {ndim}-D")
    header = 4 + 4 * d
    if len(raw) < header:
        raise IdxFormatError(
            f"{path}: header cut short ({len(raw)} bytes, {header} needed for {d} dimensions)"
        )
    shape = struct.unpack(f">{d}I", raw[4:header])
    dtype = _TYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise IdxFormatError(
            f"{path}: {what}: shape {shape} of {dtype.name} needs {expected} payload bytes, found {got}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path, array, *, compress=None):
    """Write ``array`` as an IDX file; gzip-compressed (deterministically: no timestamp) when ``compress`` is
    True, or when it is None and ``path`` ends in ``.gz``."""
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=")
    if key not in _CODES:
        raise TypeError(
            f"array has dtype {array.dtype.name}, which IDX cannot store "
            f"(it stores {', '.join(sorted(str(t) for t in _CODES))})"
        )
    code = _CODES[key]
    data = (
        struct.pack(">HBB", 0, code, array.ndim)
        + struct.pack(f">{array.ndim}I", *array.shape)
        + np.ascontiguousarray(array, dtype=_TYPES[code]).tobytes()
    )
    if compress is None:
        compress = os.fspath(path).endswith(".gz")
    if compress:
        data = gzip.compress(data, compresslevel=9, mtime=0)
    with open(path, "wb") as f:
        f.write(data)
