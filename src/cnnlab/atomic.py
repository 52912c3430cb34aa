"""Atomic file writes: a reader, or a process killed at any moment, sees the old file or the new one.

Every file cnnlab writes into a run directory (checkpoints, JSON, CSV, PNG, HTML) goes through
here: a temporary file in the same folder, flushed and fsynced, then os.replace, then the folder
fsynced so the rename itself survives a power loss.

A place that cannot be written (no permission, a file where a folder is needed, a read-only or
missing file system, a full disk) raises OutputError naming the path; a failed write leaves no
temporary file behind.
"""

from __future__ import annotations

import errno
import io
import os
import re
import socket
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from cnnlab.errors import OutputError

# errno values an OSError raised while writing the content can carry that mean "this place is full or
# read-only", not a bug in the writer: those become OutputError too
_STORAGE_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG, errno.EROFS)
                            if e is not None)


def _reason(exc: OSError) -> str:
    """The OS's words for an OSError ('No such file or directory'), without the path."""
    return exc.strerror or str(exc)


def _fix(exc: OSError) -> str:
    """How to get past an OSError, as the end of an error sentence."""
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", None)):
        return "free some space or choose another folder"
    return "choose a folder you can write to"


def _file_in_the_way(folder: Path) -> Path | None:
    """The folder itself or its nearest existing parent when that is a file, not a folder; else None."""
    for p in (folder, *folder.parents):
        try:
            mode = p.stat().st_mode
        except OSError:  # missing, or under a file (ENOTDIR): look further up
            continue
        return None if stat.S_ISDIR(mode) else p
    return None


def _folder_error(folder: Path, exc: OSError) -> OutputError:
    blocker = _file_in_the_way(folder)
    if blocker == folder:
        return OutputError(f"cannot use {folder} as a folder: it is a file; choose a folder, not a file")
    if blocker is not None:
        return OutputError(f"cannot create folder {folder}: {blocker} is a file, not a folder; "
                           "choose another place or move that file")
    return OutputError(f"cannot create folder {folder} ({_reason(exc)}); {_fix(exc)}")


def _write_error(path: Path, exc: OSError) -> OutputError:
    if isinstance(exc, IsADirectoryError) or path.is_dir():
        return _is_a_folder(path)
    return OutputError(f"cannot write {path} ({_reason(exc)}); {_fix(exc)}")


def _is_a_folder(path: Path) -> OutputError:
    return OutputError(f"cannot write {path}: it is a folder; choose a file name, not a folder")


@contextmanager
def _writing(path: Path):
    """Turn an OSError of the file-system calls inside into an OutputError naming path."""
    try:
        yield
    except OSError as exc:
        raise _write_error(path, exc) from exc


def make_folder(folder: str | Path) -> Path:
    """Create a folder and its parents (fine if it exists).

    Raises:
        OutputError: it cannot be created (a file in the way, no permission, a read-only or missing place).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _folder_error(folder, exc) from exc
    return folder


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


# a temporary older than this is abandoned whoever wrote it (one whose writer is known to be dead
# goes at once): no file cnnlab writes takes an hour
_STALE_SECONDS = 3600


def _writer_tag() -> str:
    """This process as '<host>-<pid>', put in its temporaries' names so others can tell if it still runs."""
    return f"{re.sub(r'[^A-Za-z0-9_]+', '_', socket.gethostname())}-{os.getpid()}"


def _is_running(pid: int) -> bool:
    """Whether process pid lives on this host (signal 0 only checks; Windows has no such probe: True)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it runs, as another user
        return True
    return True


def _is_abandoned(tmp: Path, prefix: str) -> bool:
    """True for a temporary whose writer died (its pid, on this host, runs no more) or that is over an hour
    old (whoever wrote it: a pid is reused after a reboot); a live writer's recent file, here or on another
    host sharing the folder, is left alone."""
    try:
        if time.time() - tmp.stat().st_mtime > _STALE_SECONDS:
            return True
    except OSError:
        return False
    found = re.fullmatch(r"(.+)-(\d+)\.[^.]+\.tmp", tmp.name[len(prefix):])
    return bool(found and found[1] == _writer_tag().rpartition("-")[0] and not _is_running(int(found[2])))


def _remove_stale(folder: Path, prefix: str) -> None:
    """Remove abandoned temporaries of writers killed mid-write (best effort: a folder that can be written
    but not listed still takes the new file)."""
    try:
        for tmp in folder.glob(f"{prefix}*.tmp"):
            if _is_abandoned(tmp, prefix):
                tmp.unlink(missing_ok=True)
    except OSError:
        pass


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Write a file via a temporary one in the same folder: flush, fsync, os.replace, fsync the folder.

    Leftover temporaries of writers killed mid-write are removed first (not those of another writer of the
    same file still at work); a failed write removes its own.

    Args:
        path: the destination file; its folder is created if missing.
        write: called with the open binary temporary file; writes the whole content.

    Raises:
        OutputError: the folder or the file cannot be written (no permission, a file where a folder is
            needed, a folder where the file should go, a read-only, missing or full place).
    """
    path = Path(path)
    folder = make_folder(path.parent)
    if path.is_dir():
        raise _is_a_folder(path)
    prefix = f".{path.name}."
    _remove_stale(folder, prefix)
    with _writing(path):
        fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{_writer_tag()}.", suffix=".tmp", dir=folder)
    f = os.fdopen(fd, "wb")
    try:
        umask = os.umask(0)
        os.umask(umask)
        with _writing(path):
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        try:
            write(f)
        except OSError as exc:
            if exc.errno not in _STORAGE_ERRNOS:
                raise
            raise _write_error(path, exc) from exc
        with _writing(path):
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(tmp, path)
    except BaseException:
        try:
            f.close()  # may flush what the writer left buffered, and fail the same way: the fd is closed anyway
        except OSError:
            pass
        try:
            os.unlink(tmp)
        except OSError:
            pass  # the next write of this path removes it as stale
        raise
    fsync_dir(folder)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically."""
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return write_bytes(path, text.encode("utf-8"))
