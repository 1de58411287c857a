"""Atomic file writes: the one way cnnkern writes a file (models, checkpoints, IDX files, plots, bench JSON).

:func:`atomic_write` writes to a temporary file in the destination's own folder (so that the final rename
never crosses a file system), flushes and fsyncs it, then ``os.replace``-s it over the destination and
fsyncs the folder. A crash, a full disk or an exception at any point before the rename leaves the previous
file untouched and removes the temporary file (a ``kill -9`` may leave a ``.<name>.*.tmp`` behind; it is
never mistaken for the real file). Readers see either the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

__all__ = ["atomic_save", "atomic_write", "atomic_write_bytes"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """Context manager: a file object opened with ``mode`` ('wb' or 'w') whose contents replace ``path``
    when the block ends without an exception (and only then)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    if os.path.islink(path):  # write through the link, as open() would, instead of replacing the link
        path = os.path.realpath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory, cannot write a file there")
    # the name shortened so that prefix + random part + suffix stay within a file system's 255 bytes
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)[:200]}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give the result the permissions a plain open() would have
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def _fsync_dir(folder: str) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_save(path: str | os.PathLike, writer: Callable[[IO], Any]) -> None:
    """Replace ``path`` atomically with what ``writer(file_object)`` writes (e.g. ``np.savez`` or a
    matplotlib ``savefig`` with an explicit format)."""
    with atomic_write(path, "wb") as f:
        writer(f)
