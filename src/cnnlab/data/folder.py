"""Image folders (`folder:PATH`): one subfolder per class, as Keras's image_dataset_from_directory.

    PATH/cat/001.png, PATH/dog/002.jpg, ...            -> a seeded stratified train/test split
    PATH/train/cat/..., PATH/test/cat/...              -> the given split (same classes in both)

Class names are the subfolder names, sorted; hidden files and folders (a leading dot) are
ignored, and so are files whose extension names no image format PIL reads (notes.txt, Thumbs.db:
Keras skips them too), with one warning that counts them. A file with an image's extension, or
with none, must be an image. Images of any mode and size are converted to one channel count
(grey if every image is grey, else RGB) and one size (the most common one, unless given).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from cnnlab.data.dataset import ImageDataset, stratified_split
from cnnlab.errors import ConfigError, DataFormatError

log = logging.getLogger(__name__)

GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}  # PIL modes without colour


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _may_be_image(path: Path) -> bool:
    """A file whose extension names an image format PIL reads (.png, .jpg, .webp, ...), or that has none."""
    return path.is_file() and (not path.suffix or path.suffix.lower() in Image.registered_extensions())


def _class_folders(root: Path) -> list[Path]:
    """The class subfolders of root; every one must hold at least one file."""
    classes = [p for p in _visible(root) if p.is_dir()]
    if not classes:
        raise DataFormatError(f"{root} has no class folders; put each class's images in its "
                              f"own subfolder, e.g. {root}/cat/1.png and {root}/dog/2.png")
    for folder in classes:
        if not any(_may_be_image(p) for p in _visible(folder)):
            raise DataFormatError(f"class folder {folder} holds no images; add images to it "
                                  "or remove it")
    return classes


def _files(class_folders: list[Path]) -> tuple[list[Path], list[int]]:
    """The image files of each class folder and their labels; other files are skipped, said once."""
    paths, labels, skipped = [], [], []
    for label, folder in enumerate(class_folders):
        for p in _visible(folder):
            if _may_be_image(p):
                paths.append(p)
                labels.append(label)
            elif p.is_file():
                skipped.append(p)
    if skipped:
        log.warning("skipped %d file%s whose extension is no image format (e.g. %s)", len(skipped),
                    "" if len(skipped) == 1 else "s", skipped[0])
    return paths, labels


def _open(path: Path) -> Image.Image:
    """Open an image lazily (header only), or raise DataFormatError naming the file."""
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as exc:
        reason = "is not an image PIL can read" if isinstance(exc, UnidentifiedImageError) \
            else f"cannot be opened ({exc})"
        raise DataFormatError(f"{path} {reason}; remove it or replace it with a PNG or "
                              "JPEG file") from None


def _convert(image: Image.Image, path: Path, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """PIL image -> uint8 (C, H, W) with `channels` (1 or 3) and `size` (H, W)."""
    try:
        image = image.convert("L" if channels == 1 else "RGB")
        if image.size != (size[1], size[0]):  # PIL sizes are (W, H)
            # bilinear with PIL's antialiasing support when shrinking
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    except (OSError, ValueError) as exc:  # truncated or corrupt pixel data shows up here
        raise DataFormatError(f"{path} is damaged and cannot be decoded ({exc}); remove or "
                              "replace it") from None
    return data.view(size[0], size[1], channels).permute(2, 0, 1).contiguous()


def _check_channels(channels: int | None) -> None:
    if channels not in (None, 1, 3):
        raise ConfigError(f"images can be converted to 1 (grey) or 3 (RGB) channels, not "
                          f"{channels}")


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def load_image(path: str | os.PathLike, channels: int, size: int | tuple[int, int]) -> torch.Tensor:
    """One image file as a model's input, converted as folder datasets are.

    Args:
        path: a PNG, JPEG or any file PIL reads.
        channels: 1 (grey) or 3 (RGB).
        size: side length, or (H, W).

    Returns:
        uint8 tensor (C, H, W); normalise with the training set's mean and std.
    """
    _check_channels(channels)
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path} does not exist or is not a file: check the image path")
    with _open(path) as image:
        return _convert(image, path, channels, _size(size))


def _read_images(paths: list[Path], channels: int | None, size) -> torch.Tensor:
    """Read every image into one uint8 (N, C, H, W) tensor, choosing channels and size if None."""
    modes, sizes = [], []
    for p in paths:  # first pass reads headers only: every file must be an image
        with _open(p) as image:
            modes.append(image.mode)
            sizes.append(image.size)
    if channels is None:
        channels = 1 if all(m in GREY_MODES for m in modes) else 3
    if size is None:
        width, height = Counter(sizes).most_common(1)[0][0]  # ties: the first seen, sorted order
        size = (height, width)
    size = _size(size)
    out = torch.empty((len(paths), channels, *size), dtype=torch.uint8)
    for i, p in enumerate(paths):
        with _open(p) as image:
            out[i] = _convert(image, p, channels, size)
    return out


def load_folder(path: str | os.PathLike, *, size: int | tuple[int, int] | None = None,
                channels: int | None = None, test_fraction: float = 0.2,
                seed: int = 0) -> ImageDataset:
    """Load a class-per-folder image tree as an ImageDataset.

    Args:
        path: the root folder (with class subfolders, or train/ and test/ holding them).
        size: (H, W) or a side length for every image; None: the most common size.
        channels: 1 or 3; None: 1 if every image is grey, else 3.
        test_fraction: share of each class held out as the test set when there is no test/.
        seed: fixes that held-out share.

    Raises:
        DataFormatError: missing or empty class folders, a single class, a file that is not an
            image, or train/ and test/ with different classes.
    """
    _check_channels(channels)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataFormatError(f"{root} is not a folder; give folder:PATH with one subfolder "
                              "of images per class")
    train_root, test_root = root / "train", root / "test"
    if train_root.is_dir() != test_root.is_dir():
        have, lack = ("train", "test") if train_root.is_dir() else ("test", "train")
        raise DataFormatError(f"{root} has {have}/ but no {lack}/; add {lack}/ with the same "
                              f"class folders, or put the class folders directly in {root}")
    split = train_root.is_dir()
    classes = _class_folders(train_root if split else root)
    names = [c.name for c in classes]
    if len(classes) < 2:
        raise DataFormatError(f"{classes[0].parent} has a single class folder ({names[0]}); "
                              "a classifier needs at least two, add another class folder")
    if split:
        test_classes = _class_folders(test_root)
        test_names = [c.name for c in test_classes]
        if test_names != names:
            raise DataFormatError(f"{train_root} has classes {names} but {test_root} has "
                                  f"{test_names}; give both the same class folders")
        train_paths, train_labels = _files(classes)
        test_paths, test_labels = _files(test_classes)
        x = _read_images(train_paths + test_paths, channels, size)
        y = torch.tensor(train_labels + test_labels, dtype=torch.int64)
        n = len(train_paths)
        return ImageDataset(root.name, names, x[:n], y[:n], x[n:], y[n:])
    paths, labels = _files(classes)
    x = _read_images(paths, channels, size)
    y = torch.tensor(labels, dtype=torch.int64)
    train, test = stratified_split(y, test_fraction, seed)
    return ImageDataset(root.name, names, x[train], y[train], x[test], y[test])
