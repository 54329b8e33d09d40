"""Writing files whole or not at all."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from arc.errors import UserError


class FileWriteError(UserError, OSError):
    """A file could not be written (disk full, read-only directory); the previous file, if any, is untouched."""


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` whole or not at all: ``write`` fills ``.<name>.tmp`` in the same directory (so the rename
    never crosses a filesystem), which is fsynced and renamed over ``path``. On any failure the temporary file is
    removed (one left by a killed process is overwritten by the next write); a full or read-only disk is a
    ``FileWriteError`` naming the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise FileWriteError(
                f"could not write {path}: no space left in {path.parent} (free some, or write elsewhere, e.g. "
                "paths.output_dir=...); the previous files are untouched"
            ) from err
        if isinstance(err, OSError) and err.errno in (errno.EROFS, errno.EACCES):
            raise FileWriteError(f"could not write {path}: {path.parent} is not writable ({err.strerror})") from err
        raise


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
