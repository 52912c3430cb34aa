"""Named datasets: where their files are looked for, where they are downloaded from, and their
pinned SHA-256 sums; `load_dataset` turns a spec (a name or folder:PATH) into an ImageDataset.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from cnnlab.data import cifar
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.download import DownloadError, ProgressFn, download_file
from cnnlab.data.idx import check_pair, maybe_gunzip, parse_idx, read_idx
from cnnlab.errors import ConfigError, DataFormatError, DatasetNotFound


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset: its name, size in bytes, and SHA-256 as served (hex)."""

    name: str
    size: int
    sha256: str
    raw_sha256: str | None = None  # SHA-256 of the decompressed content, where known


@dataclass(frozen=True)
class Source:
    """A named dataset: class names, files, and the official base address."""

    name: str
    classes: tuple[str, ...]
    files: tuple[FileSpec, ...]
    url: str  # base address; a file's URL is url + file name
    kind: str = "idx"  # "idx" (train/test images/labels) or "cifar" (the python tarball)


IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _idx_files(*pins: tuple[int, str] | tuple[int, str, str]) -> tuple[FileSpec, ...]:
    return tuple(FileSpec(name, *pin) for name, pin in zip(IDX_NAMES, pins))


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")

SOURCES: dict[str, Source] = {s.name: s for s in (
    # sizes and .gz SHA-256: TensorFlow Datasets, tensorflow_datasets/url_checksums/
    # fashion_mnist.txt. The raw (decompressed) SHA-256 were computed from Debian's package
    # dataset-fashion-mnist 0.0~git20200523.55506a9-1, whose .gz files were recompressed (other
    # .gz bytes) but decompress to exactly the raw sums other projects publish for upstream's
    # files (e.g. a Rust loader's images_sha256 for zalandoresearch/fashion-mnist data/fashion).
    Source("fashion-mnist", FASHION_CLASSES, _idx_files(
        (26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
         "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        (29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
         "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
         "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        (5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
         "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34")),
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
    # TensorFlow Datasets, url_checksums/mnist.txt (LeCun's original files as mirrored by
    # cvdf-datasets; the ossci mirror torchvision uses serves the same files, same sizes, and
    # torchvision pins their MD5s f68b3c2d..., d53e105e..., 9fb629c4..., ec29112d...). The raw
    # SHA-256 are those public manifests pin beside these .gz sums for the decompressed files; a
    # copy of the four raw files (47,040,016 / 60,008 / 7,840,016 / 10,008 bytes) gave the same.
    Source("mnist", tuple(str(d) for d in range(10)), _idx_files(
        (9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
         "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        (28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
         "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        (1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
         "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        (4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
         "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2")),
        "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    # TensorFlow Datasets, url_checksums/kmnist.txt. Class names: the romanised kana of
    # kmnist_classmap.csv (お き す つ な は ま や れ を), ASCII so every plot font has them.
    Source("kmnist", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"), _idx_files(
        (18165135, "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4"),
        (29497, "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17"),
        (3041136, "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5"),
        (5120, "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c")),
        "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"),
    # SHA-256 as pinned by Keras (keras/datasets/cifar10.py, file_hash); TFDS pins only the
    # binary version. Size 170,498,071 bytes.
    Source("cifar10", ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                       "ship", "truck"),
           (FileSpec(cifar.ARCHIVE, 170498071,
                     "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),),
           "https://www.cs.toronto.edu/~kriz/", kind="cifar"),
)}

log = logging.getLogger(__name__)

MINI = "fashion-mnist-mini"  # the stratified subset shipped in cnnlab/data/mini/
SYSTEM_DIR = Path("/usr/share/datasets")  # Debian's dataset-* packages install here


def cache_dir() -> Path:
    """cnnlab's download folder: $XDG_CACHE_HOME/cnnlab, else ~/.cache/cnnlab.

    Raises:
        ConfigError: neither is known (no $HOME and a user without a passwd entry, as under
            `docker run --user N`).
    """
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = Path.home() / ".cache"
        except RuntimeError:  # Path.home(): HOME unset and no passwd entry for this uid
            raise ConfigError("cnnlab has no cache folder: HOME is not set and this user has no home "
                              "folder; set XDG_CACHE_HOME (or HOME) to a writable folder") from None
    return Path(base) / "cnnlab"


def candidate_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for a named dataset, in order."""
    dirs: list[Path] = []
    if data_dir is not None:
        dirs += [Path(data_dir), Path(data_dir) / name]
    if os.environ.get("CNNLAB_DATA"):
        env = Path(os.environ["CNNLAB_DATA"])
        dirs += [env / name, env]
    dirs.append(SYSTEM_DIR / name)
    try:
        dirs.append(cache_dir() / name)
    except ConfigError:
        pass  # no home folder: the other places are still searched, and a download says why it cannot
    return dirs


def _idx_path(folder: Path, gz_name: str) -> Path | None:
    """The file as gz_name or already unzipped (gz_name without .gz), if present."""
    for candidate in (folder / gz_name, folder / gz_name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def is_complete(source: Source, folder: Path) -> bool:
    """True when folder holds every file the dataset needs."""
    if source.kind == "cifar":
        return cifar.has_cifar(folder)
    return all(_idx_path(folder, f.name) is not None for f in source.files)


def _owner_of_labels(source: Source, folder: Path) -> str | None:
    """The name of another dataset whose pinned test labels folder holds, if any, else None.

    The four IDX sets share their file names, so a folder of Fashion-MNIST looks complete to
    mnist too. The 10,000 test labels (5-10 KB) tell the sets apart: their SHA-256, as stored
    and decompressed, is compared with every other set's pins.
    """
    label_file = source.files[3].name  # t10k-labels-idx1-ubyte.gz
    path = _idx_path(folder, label_file)
    stored = path.read_bytes()
    raw = bytes(maybe_gunzip(stored, str(path)))
    digests = {hashlib.sha256(stored).hexdigest(), hashlib.sha256(raw).hexdigest()}
    for other in SOURCES.values():
        if other is source or other.kind != "idx":
            continue
        spec = other.files[3]
        if digests & {spec.sha256, spec.raw_sha256}:
            return other.name
    return None


def _check_found(source: Source, folder: Path) -> None:
    """Refuse a complete-looking folder that holds another named dataset's files."""
    if source.kind != "idx":
        return
    owner = _owner_of_labels(source, folder)
    if owner is not None:
        raise DataFormatError(
            f"{folder} holds {owner}'s files, not {source.name}'s (its test labels are "
            f"{owner}'s, by SHA-256); point --data-dir or $CNNLAB_DATA at {source.name}'s files "
            f"or at a folder holding a {source.name}/ subfolder")


def _check_partial(source: Source, folder: Path) -> None:
    """Refuse a folder the user named that holds some of an IDX dataset's files but not all."""
    if source.kind != "idx":
        return
    missing = [f.name for f in source.files if _idx_path(folder, f.name) is None]
    if 0 < len(missing) < len(source.files):
        raise DatasetNotFound(f"{folder} holds only part of {source.name}: {', '.join(missing)} "
                              f"{'is' if len(missing) == 1 else 'are'} missing; add "
                              f"{'it' if len(missing) == 1 else 'them'} (from {source.url}) or "
                              "pass a --data-dir holding all four files")


def _lookup(name: str) -> Source:
    if name not in SOURCES:
        known = ", ".join([*SOURCES, MINI, "folder:PATH"])
        raise DatasetNotFound(f"unknown dataset {name!r}; choose one of {known}")
    return SOURCES[name]


class _Progress:
    """Adds the files' progress up into one (done, total) for all of a dataset's downloads."""

    def __init__(self, sizes: list[int], on_progress: ProgressFn | None):
        self.sizes, self.done, self.on_progress = sizes, 0, on_progress

    def for_file(self, i: int) -> ProgressFn:
        def report(done: int, total: int) -> None:
            if total and done == 0:
                self.sizes[i] = total  # the server's Content-Length beats the pinned size
            if self.on_progress is not None:
                self.on_progress(self.done + done, sum(self.sizes))
        return report


def fetch(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True,
          mirror: str | None = None, checksums: Mapping[str, str] | None = None,
          timeout: float = 30.0, on_progress: ProgressFn | None = None) -> Path:
    """Find a named dataset's folder, downloading into the cache when it is nowhere.

    Args:
        name: fashion-mnist, mnist, kmnist or cifar10.
        data_dir: searched first (the folder itself, then data_dir/name).
        download: False raises DatasetNotFound instead of downloading.
        mirror: base URL used instead of the official one (also $CNNLAB_MIRROR); files are
            fetched from <mirror>/<name>/<file>.
        checksums: file name -> SHA-256 replacing the pinned sums (for private mirrors, tests).
        timeout: seconds per connection attempt and per read.
        on_progress: on_progress(done_bytes, total_bytes) over all files being downloaded.

    Returns:
        The folder holding the complete dataset.

    Raises:
        DatasetNotFound: nowhere on disk and not downloadable, or data_dir holds part of it.
        DataFormatError: the folder found holds another named dataset's files (e.g. $CNNLAB_DATA
            pointing at Fashion-MNIST's folder when mnist is asked for), or a download's
            checksum is wrong.
    """
    source = _lookup(name)
    if data_dir is not None and not Path(data_dir).is_dir():
        # a typo, or a run's recorded folder since removed: said, then the usual places searched
        log.warning("the data folder %s does not exist; looking for %s in the usual places instead", data_dir, name)
    searched = candidate_dirs(name, data_dir)
    given = searched[:2] if data_dir is not None else []  # --data-dir and --data-dir/name
    if given and not any(is_complete(source, folder) for folder in given):
        for folder in given:  # a folder the user named is not passed over when half full
            _check_partial(source, folder)
    for folder in searched:
        if is_complete(source, folder):
            _check_found(source, folder)
            return folder
    target = cache_dir() / name
    needed = ", ".join(f.name for f in source.files)
    where = ", ".join(str(p) for p in searched)
    how = (f"put {needed} in the --data-dir given ({data_dir})" if data_dir is not None
           else f"put {needed} in {target} or pass --data-dir DIR")
    if not download:
        raise DatasetNotFound(f"{name} was not found in {where} and downloading is off; {how}")
    mirror = mirror or os.environ.get("CNNLAB_MIRROR")
    base = f"{mirror.rstrip('/')}/{name}/" if mirror else source.url
    # files already in the cache were verified when downloaded; fetch only the missing ones
    todo = [f for f in source.files if source.kind != "idx" or _idx_path(target, f.name) is None]
    progress = _Progress([0 if checksums else f.size for f in todo], on_progress)
    for i, spec in enumerate(todo):
        url = base + spec.name
        expected = checksums.get(spec.name) if checksums else spec.sha256
        if expected is None:
            raise DatasetNotFound(f"no SHA-256 was given for {spec.name} in checksums; "
                                  f"add it or drop the checksums override")
        try:
            download_file(url, target / spec.name, sha256=expected,
                          raw_sha256=None if checksums else spec.raw_sha256,
                          timeout=timeout, on_progress=progress.for_file(i))
        except DownloadError as exc:
            raise DatasetNotFound(f"{name} was not found in {where} and downloading {url} "
                                  f"failed ({exc}); {how}") from None
        progress.done += progress.sizes[i]
    return target


def _as_dataset(name: str, classes, x_train, y_train, x_test, y_test) -> ImageDataset:
    """numpy uint8 images ((N, H, W) or (N, C, H, W)) and labels -> ImageDataset."""
    def images(x: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(x)
        return x.unsqueeze(1) if x.dim() == 3 else x  # (N, H, W) -> (N, 1, H, W)

    return ImageDataset(name, list(classes), images(x_train), torch.from_numpy(y_train).long(),
                        images(x_test), torch.from_numpy(y_test).long())


def _read_idx_set(files: list[np.ndarray], names: list[str], num_classes: int) -> list[np.ndarray]:
    """Cross-check train/test images and labels (counts, label range, image size)."""
    x_train, y_train, x_test, y_test = files
    check_pair(x_train, y_train, num_classes, names[0], names[1])
    check_pair(x_test, y_test, num_classes, names[2], names[3])
    if x_train.shape[1:] != x_test.shape[1:]:
        (h1, w1), (h2, w2) = x_train.shape[1:], x_test.shape[1:]
        raise DataFormatError(f"{names[0]} has {h1}x{w1} images but {names[2]} has {h2}x{w2}; "
                              "the files come from different datasets, download both again")
    return files


def load_mini() -> ImageDataset:
    """The Fashion-MNIST subset shipped with cnnlab (6,000 train / 1,000 test, 600/100 a class)."""
    root = resources.files("cnnlab.data").joinpath("mini")
    arrays, names = [], []
    for file_name in IDX_NAMES:
        entry = root.joinpath(file_name)
        names.append(f"cnnlab/data/mini/{file_name}")
        arrays.append(parse_idx(entry.read_bytes(), names[-1]))
    arrays = _read_idx_set(arrays, names, len(FASHION_CLASSES))
    return _as_dataset(MINI, FASHION_CLASSES, *arrays)


def load_named(name: str, data_dir: str | os.PathLike | None = None, **fetch_args) -> ImageDataset:
    """Load a named dataset (see fetch for the arguments) as an ImageDataset."""
    if name == MINI:
        return load_mini()
    source = _lookup(name)
    folder = fetch(name, data_dir, **fetch_args)
    if source.kind == "cifar":
        return _as_dataset(name, source.classes, *cifar.read_cifar10(folder))
    paths = [_idx_path(folder, f.name) for f in source.files]
    arrays = _read_idx_set([read_idx(p) for p in paths], [str(p) for p in paths],
                           len(source.classes))
    return _as_dataset(name, source.classes, *arrays)


def absolute_spec(spec: str) -> str:
    """A dataset spec that means the same from any working directory: folder:PATH with PATH made
    absolute (~ expanded); a dataset name as it is."""
    if spec.startswith("folder:"):
        return "folder:" + str(Path(spec.removeprefix("folder:")).expanduser().resolve())
    return spec


def load_dataset(spec: str, data_dir: str | os.PathLike | None = None, *, download: bool = True,
                 on_progress: ProgressFn | None = None, seed: int = 0,
                 mirror: str | None = None, checksums: Mapping[str, str] | None = None,
                 timeout: float = 30.0) -> ImageDataset:
    """Load a dataset by spec: fashion-mnist, fashion-mnist-mini, mnist, kmnist, cifar10 or
    folder:PATH.

    Args:
        spec: the dataset name, or folder:PATH for a class-per-folder image tree.
        data_dir: searched first for named datasets.
        download: allow downloading a named dataset that is not on disk.
        on_progress: on_progress(done_bytes, total_bytes) while downloading.
        seed: the train/test split of a folder without train/ and test/.
        mirror, checksums, timeout: see fetch.

    Raises:
        DatasetNotFound: unknown name, or not on disk and not downloadable.
        DataFormatError: a file is malformed or its checksum is wrong.
    """
    if spec.startswith("folder:"):
        from cnnlab.data.folder import load_folder
        return load_folder(spec.removeprefix("folder:"), seed=seed)
    return load_named(spec, data_dir, download=download, on_progress=on_progress,
                      mirror=mirror, checksums=checksums, timeout=timeout)
