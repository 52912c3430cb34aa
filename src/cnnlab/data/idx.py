"""IDX files (the MNIST family's format): parse, validate, write.

Layout (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code (0x08 = unsigned byte),
the number of dimensions, then one big-endian uint32 per dimension, then the values row-major.
Files may be gzip-compressed; that is detected from the magic bytes 1f 8b, not from the name.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from cnnlab.errors import DataFormatError

_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE = 0x08
# Type codes the format defines; only unsigned bytes occur in the datasets cnnlab reads.
_TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
               0x0D: "float32", 0x0E: "float64"}


def _dims_text(dims: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in dims)


def maybe_gunzip(data: bytes | bytearray, source: str) -> bytes | bytearray:
    """Return the bytes decompressed when they start with the gzip magic, else unchanged."""
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        # bytearray (one copy, ~10 ms for 47 MB) so arrays over it are writable and
        # torch.from_numpy takes them without a warning
        return bytearray(gzip.decompress(data))
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; EOF = cut short
        raise DataFormatError(
            f"{source} is not a valid gzip file ({exc}); download it again or replace it"
        ) from None


def parse_idx(data: bytes | bytearray, source: str) -> np.ndarray:
    """Parse IDX bytes (gzip or raw) into a uint8 array of the header's shape.

    Args:
        data: the file's bytes, gzip-compressed or not.
        source: the file name used in error messages.

    Returns:
        A uint8 array viewing the (decompressed) buffer, no copy; read-only only when data is
        uncompressed bytes.
    """
    data = maybe_gunzip(data, source)
    if len(data) < 4:
        raise DataFormatError(f"{source} is too short to be an IDX file ({len(data)} bytes); "
                              "download it again")
    if data[0] != 0 or data[1] != 0:
        raise DataFormatError(f"{source} is not an IDX file: its first two bytes are "
                              f"{data[0]:#04x} {data[1]:#04x}, not 0x00 0x00; check the file name "
                              "or download it again")
    type_code, ndim = data[2], data[3]
    if type_code != _UBYTE:
        kind = _TYPE_NAMES.get(type_code, "unknown")
        raise DataFormatError(f"{source} holds IDX type code {type_code:#04x} ({kind}), which "
                              "cnnlab does not support; only 0x08 (unsigned byte) images and "
                              "labels are read")
    if ndim == 0:
        raise DataFormatError(f"{source} declares 0 dimensions; an IDX file needs at least one")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(f"{source} is truncated inside its header ({len(data)} of {header} "
                              "bytes); download it again")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(int(d) for d in dims)  # exact (no int64 overflow); 1 byte an item
    follow = len(data) - header
    if follow < expected:
        raise DataFormatError(f"{source} is truncated: header says {_dims_text(dims)} = "
                              f"{expected:,} bytes but {follow:,} follow; download it again")
    if follow > expected:
        raise DataFormatError(f"{source} has {follow - expected:,} trailing bytes after the "
                              f"{_dims_text(dims)} = {expected:,} its header declares; the file "
                              "is corrupt, download it again")
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(dims)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzip or raw) into a uint8 array."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"{path} cannot be read ({exc.strerror}); check that it exists "
                              "and is readable") from None
    if data[:2] != _GZIP_MAGIC:
        data = bytearray(data)  # writable, as maybe_gunzip's output is
    return parse_idx(data, str(path))


def check_pair(images: np.ndarray, labels: np.ndarray, num_classes: int,
               images_source: str, labels_source: str) -> None:
    """Check an images/labels pair: (N, H, W) images, (N,) labels, every label < num_classes."""
    if images.ndim != 3:
        raise DataFormatError(f"{images_source} holds a {images.ndim}-D array of shape "
                              f"{_dims_text(images.shape)}; images must be 3-D (count x rows x "
                              "columns), check that images and labels are not swapped")
    if labels.ndim != 1:
        raise DataFormatError(f"{labels_source} holds a {labels.ndim}-D array of shape "
                              f"{_dims_text(labels.shape)}; labels must be 1-D, check that "
                              "images and labels are not swapped")
    if images.shape[0] != labels.shape[0]:
        raise DataFormatError(f"{images_source} has {images.shape[0]:,} images but "
                              f"{labels_source} has {labels.shape[0]:,} labels; the two files "
                              "come from different sets, download both again")
    if labels.size and int(labels.max()) >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise DataFormatError(f"{labels_source} has label {int(labels[bad])} at position {bad} "
                              f"but the dataset has {num_classes} classes (0..{num_classes - 1}); "
                              "the file is corrupt or from another dataset")


def read_idx_pair(images_path: str | os.PathLike, labels_path: str | os.PathLike,
                  num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read and cross-check an images file and its labels file.

    Args:
        images_path: IDX file of shape (N, H, W).
        labels_path: IDX file of shape (N,).
        num_classes: labels must be below this.

    Returns:
        (images uint8 (N, H, W), labels uint8 (N,)).
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    check_pair(images, labels, num_classes, str(images_path), str(labels_path))
    return images, labels


def encode_idx(array: np.ndarray) -> bytes:
    """Encode a uint8 array as raw IDX bytes (header + values)."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"encode_idx writes uint8 arrays only, got {array.dtype}")
    header = bytes([0, 0, _UBYTE, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write a uint8 array as an IDX file, gzip-compressed (reproducibly) when the name ends .gz."""
    path = Path(path)
    data = encode_idx(array)
    if compress if compress is not None else path.suffix == ".gz":
        # mtime=0 and no file name in the header: the same array always gives the same bytes
        data = gzip.compress(data, compresslevel=9, mtime=0)
    path.write_bytes(data)
