"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST (plain or gzip-compressed).

Layout (big-endian): two zero bytes, a type code, the number of dimensions d, then d uint32 sizes, then the
values in C order. Every way a file can be broken (missing, not gzip although named ``.gz``, a gzip stream
cut short, a bad magic, an unknown type code, a header or payload shorter or longer than the sizes say)
raises :class:`IdxFormatError` naming the file; a partly read array is never returned.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._io import atomic_write_bytes
from .._typing import PathLike

# IDX type code -> big-endian NumPy dtype of the stored values
_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES: dict[np.dtype[Any], int] = {dt.newbyteorder("="): code for code, dt in _TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
    """An IDX file that cannot be read as one: the message names the file and what is wrong."""


# Largest payload read_idx accepts unless told otherwise: 4 GiB, ~85x the full MNIST training images. A header
# is only a claim; the bound keeps a forged one (or a gzip bomb behind it) from exhausting memory.
MAX_BYTES = 4 << 30
_CHUNK = 1 << 20


def _open_stream(path: str) -> tuple[io.BufferedIOBase, io.BufferedReader, bool]:
    """(stream, raw file, is_gzip): the stream is the raw file, or a streaming gzip reader over it (nothing
    decompressed yet)."""
    f = open(path, "rb")
    head = f.read(2)
    f.seek(0)
    is_gzip = head == _GZIP_MAGIC
    if path.endswith(".gz") and not is_gzip:
        f.close()
        raise IdxFormatError(
            f"{path}: named .gz but is not gzip data (starts with {head.hex() or 'nothing'})"
        )
    return (gzip.GzipFile(fileobj=f, mode="rb") if is_gzip else f), f, is_gzip


def _read_exact(stream: io.BufferedIOBase, n: int, path: str) -> bytearray:
    """Exactly ``n`` bytes of ``stream`` as a bytearray, read in chunks so that memory follows the data that
    is really there (a truncated stream fails after reading what it has, not after allocating ``n``)."""
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = stream.read(min(_CHUNK, n - len(buf)))
        except (EOFError, OSError, zlib.error) as exc:  # cut short, bad CRC, corrupt deflate stream
            raise IdxFormatError(
                f"{path}: corrupt or truncated gzip data ({type(exc).__name__}: {exc})"
            ) from None
        if not chunk:
            return buf
        buf += chunk
    return buf


def read_idx(path: PathLike, *, ndim: int | None = None, max_bytes: int = MAX_BYTES) -> NDArray[Any]:
    """The array stored in IDX file ``path`` (gzip detected from its first bytes), in native byte order.

    ``ndim``: the number of dimensions the caller expects; another count is an :class:`IdxFormatError`.
    ``max_bytes``: the largest payload accepted (default :data:`MAX_BYTES`). The file is read as a stream and
    decompression stops at the size the header declares (plus one byte, to refuse trailing data), so a small
    gzip file that inflates to gigabytes costs no more memory than the array its header describes.
    """
    path = os.fspath(path)
    stream, raw_file, is_gzip = _open_stream(path)
    with raw_file, stream:
        head = _read_exact(stream, 4, path)
        if len(head) < 4:
            raise IdxFormatError(f"{path}: {len(head)} bytes, too short for an IDX header")
        zero, code, d = struct.unpack(">HBB", head)
        if zero != 0 or code not in _TYPES:
            raise IdxFormatError(
                f"{path}: bad IDX magic {bytes(head).hex()} (expected 0000 then a type code among "
                f"{', '.join(f'{c:02x}' for c in _TYPES)} and the number of dimensions)"
            )
        if ndim is not None and d != ndim:
            raise IdxFormatError(f"{path}: holds a {d}-D array, expected {ndim}-D")
        dims = _read_exact(stream, 4 * d, path)
        if len(dims) < 4 * d:
            raise IdxFormatError(
                f"{path}: header cut short ({4 + len(dims)} bytes, {4 + 4 * d} needed for {d} dimensions)"
            )
        shape = struct.unpack(f">{d}I", dims)
        dtype = _TYPES[code]
        expected = dtype.itemsize
        for n in shape:  # Python ints: 65536**4 stays 2**64 instead of wrapping to 0 as int64 would
            expected *= n
        if expected > max_bytes:
            raise IdxFormatError(
                f"{path}: header declares shape {shape} of {dtype.name} = {expected:,} payload bytes, over "
                f"the limit of {max_bytes:,} (read_idx(..., max_bytes=) raises it)"
            )
        if not is_gzip:  # the size on disk is known: refuse a mismatch before reading anything
            got = os.fstat(raw_file.fileno()).st_size - 4 - 4 * d
            if got != expected:
                what = "truncated" if got < expected else "has trailing bytes"
                raise IdxFormatError(
                    f"{path}: {what}: shape {shape} of {dtype.name} needs {expected} payload bytes, "
                    f"found {got}"
                )
        payload = _read_exact(stream, expected, path)
        if len(payload) < expected:
            raise IdxFormatError(
                f"{path}: truncated: shape {shape} of {dtype.name} needs {expected} payload bytes, found "
                f"{len(payload)}"
            )
        # one byte more: at the end of the stream this also makes gzip check the CRC and length trailer
        if _read_exact(stream, 1, path):
            raise IdxFormatError(
                f"{path}: has trailing bytes: shape {shape} of {dtype.name} needs {expected} payload bytes, "
                f"and the {'decompressed ' if is_gzip else ''}data goes on beyond them"
            )
    return np.frombuffer(payload, dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: PathLike, array: ArrayLike, *, compress: bool | None = None) -> None:
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
    atomic_write_bytes(path, data)
