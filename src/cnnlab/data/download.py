"""Download one file over HTTP(S), check its SHA-256, and write it atomically.

The file appears under its final name only once complete and verified: bytes go to a temporary
file in the same folder, which is fsynced and then renamed with os.replace (atomic on POSIX and
Windows). Any failure removes the temporary file, so nothing partial is ever left behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from cnnlab.atomic import fsync_dir
from cnnlab.errors import DataFormatError
from cnnlab.data.idx import maybe_gunzip

ProgressFn = Callable[[int, int], None]  # (done_bytes, total_bytes); total 0 when unknown

_CHUNK = 1 << 16  # bytes per read
_USER_AGENT = "cnnlab (+https://pypi.org/project/cnnlab)"


class DownloadError(Exception):
    """The transfer itself failed (offline, HTTP error, connection dropped); carries the reason."""


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _transfer(url: str, out, timeout: float, on_progress: ProgressFn | None) -> str:
    """Stream url into the open file out; return the hex SHA-256 of what was received."""
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            if on_progress is not None:
                on_progress(0, total)
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done, total)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot connect: {exc.reason}") from None
    except (TimeoutError, socket.timeout):
        raise DownloadError(f"no answer within {timeout:g} s") from None
    except (http.client.HTTPException, ConnectionError, OSError) as exc:
        reason = f"{exc.__class__.__name__}: {exc}"
        raise DownloadError(f"the transfer failed midway ({reason})") from None
    # http.client returns b"" rather than raising when a server closes early, so count bytes
    if total and done != total:
        raise DownloadError(f"the connection closed after {done:,} of {total:,} bytes")
    return digest.hexdigest()


def _current_umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _matches_raw(path: Path, raw_sha256: str) -> bool:
    """True when the gzip file at path decompresses to bytes with this SHA-256."""
    try:
        data = maybe_gunzip(path.read_bytes(), str(path))
    except DataFormatError:
        return False
    return hashlib.sha256(data).hexdigest() == raw_sha256


def download_file(url: str, dest: str | os.PathLike, *, sha256: str,
                  raw_sha256: str | None = None, timeout: float = 30.0,
                  on_progress: ProgressFn | None = None) -> Path:
    """Download url to dest, verified and atomic.

    Args:
        url: the address to fetch.
        dest: the final path; its folder is created if missing.
        sha256: expected hex SHA-256 of the bytes as served.
        raw_sha256: also accepted: the SHA-256 of the decompressed content of a gzip file, so a
            mirror that recompressed the same data (Debian does) still verifies.
        timeout: seconds to wait for the connection and for each read.
        on_progress: called as on_progress(done_bytes, total_bytes) while bytes arrive.

    Returns:
        dest as a Path.

    Raises:
        DownloadError: the transfer failed (the caller turns it into DatasetNotFound).
        DataFormatError: the bytes arrived but their checksum is wrong.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        # mkstemp makes the file 0600 whatever the umask; a downloaded dataset gets the mode any
        # new file gets (0644 under umask 022), so a cache shared between users stays readable
        os.chmod(tmp_name, 0o666 & ~_current_umask())
    except OSError as exc:
        raise DownloadError(f"cannot write to {dest.parent}: {exc.strerror}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _transfer(url, out, timeout, on_progress)
            out.flush()
            os.fsync(out.fileno())
        if got != sha256.lower() and not (raw_sha256 and _matches_raw(tmp, raw_sha256.lower())):
            raise DataFormatError(f"{url} downloaded with SHA-256 {got} but {sha256} was "
                                  f"expected; the file or the mirror is corrupt, try again later "
                                  f"or put a good copy at {dest}")
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
