"""CIFAR-10's python batches (https://www.cs.toronto.edu/~kriz/cifar.html), read without pickle's
arbitrary code execution.

Each batch is a pickled dict {b"data": uint8 array (10000, 3072), b"labels": list of int, ...}
where a row holds the 1024 red, then green, then blue values of a 32x32 image, row-major.

Why a restricted Unpickler and not plain pickle.load: unpickling may call any importable function
(os.system included), so a tampered download could run code. The batches only need numpy's array
reconstruction, so find_class allows exactly those few globals (the approach the pickle docs give
under "Restricting Globals") and refuses the rest. Parsing the pickle opcodes by hand would also
work but would reimplement numpy's array __setstate__; CIFAR's binary version would avoid pickle
entirely, but the python version is the one people have and the one the brief names.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from cnnlab.errors import DataFormatError

ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"  # the archive's one top-level folder
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
BATCHES = TRAIN_BATCHES + (TEST_BATCH,)


def _reconstruct():
    """numpy's array reconstructor, which moved from numpy.core to numpy._core in numpy 2."""
    try:
        from numpy._core.multiarray import _reconstruct as fn
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct as fn
    return fn


def _frombuffer():
    """numpy's array-from-buffer constructor, which pickle protocol 5 names (numpy >= 1.16)."""
    try:
        from numpy._core.numeric import _frombuffer as fn
    except ImportError:  # numpy < 2
        from numpy.core.numeric import _frombuffer as fn
    return fn


def _encode(text, encoding="latin1"):
    """Stand-in for _codecs.encode, which Python 3 pickles of bytes at protocol 2 call."""
    return text.encode(encoding)


# (module, name) -> object: the only globals a CIFAR batch may name. The original batches were
# written by Python 2 and name numpy.core.multiarray; re-saved ones may name numpy._core, and
# those saved with protocol 5 (pickle.HIGHEST_PROTOCOL) build arrays with numeric._frombuffer.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct(),
    ("numpy.core.numeric", "_frombuffer"): _frombuffer(),
    ("numpy._core.numeric", "_frombuffer"): _frombuffer(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _encode,
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


def parse_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one pickled batch into (images uint8 (N, 3, 32, 32), labels uint8 (N,))."""
    try:
        # encoding="bytes": Python 2 str objects (keys and the array buffer) stay bytes
        batch = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # a corrupt pickle can fail in many ways; all mean the same here
        raise DataFormatError(f"{source} is not a CIFAR-10 batch ({exc}); download "
                              f"{ARCHIVE} again") from None
    if not isinstance(batch, dict):
        raise DataFormatError(f"{source} holds a {type(batch).__name__}, not a CIFAR-10 batch "
                              f"dict; download {ARCHIVE} again")
    images = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 \
            or images.shape[1] != 3 * 32 * 32:
        got = getattr(images, "shape", type(images).__name__)
        raise DataFormatError(f"{source} has data {got} but CIFAR-10 needs a uint8 array of "
                              f"N x 3072; download {ARCHIVE} again")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        labels = np.empty(0)
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataFormatError(f"{source} has {len(images)} images but labels of shape "
                              f"{labels.shape}; download {ARCHIVE} again")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataFormatError(f"{source} has labels outside 0..9; download {ARCHIVE} again")
    # (N, 3072) -> (N, 3, 32, 32): channel planes, each row-major
    return images.reshape(-1, 3, 32, 32), labels.astype(np.uint8)


def has_cifar(folder: Path) -> bool:
    """True when folder holds the archive, its extracted folder, or the six batches."""
    return (folder / ARCHIVE).is_file() or all((folder / FOLDER / b).is_file() for b in BATCHES) \
        or all((folder / b).is_file() for b in BATCHES)


def _read_batches(folder: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, where it came from) for the six batches, from files or the archive."""
    for base in (folder / FOLDER, folder):
        if all((base / b).is_file() for b in BATCHES):
            return {b: ((base / b).read_bytes(), str(base / b)) for b in BATCHES}
    archive = folder / ARCHIVE
    found: dict[str, tuple[bytes, str]] = {}
    try:
        # read members in memory; nothing is extracted, so no path traversal is possible
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = os.path.basename(member.name)
                if member.isfile() and name in BATCHES:
                    found[name] = (tar.extractfile(member).read(), f"{archive}:{member.name}")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataFormatError(f"{archive} is not a readable tar.gz archive ({exc}); download it "
                              "again") from None
    missing = [b for b in BATCHES if b not in found]
    if missing:
        raise DataFormatError(f"{archive} lacks {', '.join(missing)}; download it again")
    return found


def read_cifar10(folder: str | os.PathLike
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read CIFAR-10 from a folder with the archive or its batches.

    Returns:
        (x_train uint8 (50000, 3, 32, 32), y_train (50000,), x_test (10000, 3, 32, 32), y_test).
    """
    batches = {name: parse_batch(*pair) for name, pair in _read_batches(Path(folder)).items()}
    x_train = np.concatenate([batches[b][0] for b in TRAIN_BATCHES])
    y_train = np.concatenate([batches[b][1] for b in TRAIN_BATCHES])
    return x_train, y_train, *batches[TEST_BATCH]
