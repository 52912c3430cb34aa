"""Atomic file writes: a reader, or a process killed at any moment, sees the old file or the new one.

Every file cnnlab writes into a run directory (checkpoints, JSON, CSV, PNG, HTML) goes through
here: a temporary file in the same folder, flushed and fsynced, then os.replace, then the folder
fsynced so the rename itself survives a power loss.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Callable


def fsync_dir(folder: str | Path) -> None:
    """fsync a directory so a rename in it is durable (a no-op where unsupported, e.g. Windows)."""
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


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Write a file via a temporary one in the same folder: flush, fsync, os.replace, fsync the folder.

    Leftover temporaries of writers killed mid-write are removed first.

    Args:
        path: the destination file; its folder is created if missing.
        write: called with the open binary temporary file; writes the whole content.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    for stale in folder.glob(f"{prefix}*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(folder)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically."""
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return write_bytes(path, text.encode("utf-8"))
