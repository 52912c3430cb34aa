"""Image folders (`folder:PATH`): one subfolder per class, as Keras's image_dataset_from_directory.

    PATH/cat/001.png, PATH/dog/002.jpg, ...            -> a seeded stratified train/test split
    PATH/train/cat/..., PATH/test/cat/...              -> the given split (same classes in both)

Class names are the subfolder names, sorted; a class's images may sit in nested folders below it
(PATH/cat/2024/001.png), as Keras walks them. Hidden files and folders (a leading dot) are
ignored, and so are files whose extension names no image format PIL reads (notes.txt, Thumbs.db,
and .pdf, which PIL only writes: Keras skips them too), with one warning that counts them. A file
with an image's extension, or with none, must be an image. Images of any mode and size are
converted to one channel count (grey if every image is grey, else RGB) and one size (the most
common one, unless given); 16-bit images are scaled to 8 bits (v * 255 / 65535), not clipped.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cnnlab.data.dataset import ImageDataset, stratified_split
from cnnlab.errors import ConfigError, DataFormatError

log = logging.getLogger(__name__)

# PIL modes holding integers wider than 8 bits: 16-bit PNG and TIFF scans (microscopy, X-rays), and
# "I" (32-bit), in which PIL hands out 16-bit data too. PIL's convert("L") clips them to 0..255,
# which turns a 16-bit image almost all white, so _to_8bit scales them instead.
WIDE_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}
GREY_MODES = {"1", "L", "LA", "F", *WIDE_MODES}  # PIL modes without colour


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _may_be_image(path: Path) -> bool:
    """A file whose extension names an image format PIL reads (.png, .jpg, .webp, ...), or that has
    none; formats PIL can only write (.pdf, .palm) are no images to read."""
    if not path.is_file():
        return False
    if not path.suffix:
        return True
    image_format = Image.registered_extensions().get(path.suffix.lower())
    return image_format is not None and image_format in Image.OPEN


def _walk(folder: Path, seen: set[Path] | None = None) -> Iterator[Path]:
    """Every visible entry below folder that is not a folder, depth first in sorted order; a
    folder reached twice through symbolic links is read once (no endless loop)."""
    seen = set() if seen is None else seen
    real = folder.resolve()
    if real in seen:
        return
    seen.add(real)
    for p in _visible(folder):
        if p.is_dir():
            yield from _walk(p, seen)
        else:
            yield p


def _class_folders(root: Path) -> list[Path]:
    """The class subfolders of root; every one must hold at least one file."""
    classes = [p for p in _visible(root) if p.is_dir()]
    if not classes:
        raise DataFormatError(f"{root} has no class folders; put each class's images in its "
                              f"own subfolder, e.g. {root}/cat/1.png and {root}/dog/2.png")
    for folder in classes:
        if not any(_may_be_image(p) for p in _walk(folder)):
            raise DataFormatError(f"class folder {folder} holds no images; add images to it "
                                  "or remove it")
    return classes


def _files(class_folders: list[Path]) -> tuple[list[Path], list[int]]:
    """The image files below each class folder and their labels; other files are skipped, said once."""
    paths, labels, skipped = [], [], []
    for label, folder in enumerate(class_folders):
        for p in _walk(folder):
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
    except Image.DecompressionBombError as exc:
        # PIL refuses images over 2 x Image.MAX_IMAGE_PIXELS (179 megapixels), which could fill
        # the memory when decoded: a guard against crafted files
        raise DataFormatError(f"{path} is too large to decode safely ({exc}); shrink it, or "
                              "raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file") from None
    except (UnidentifiedImageError, OSError) as exc:
        reason = "is not an image PIL can read" if isinstance(exc, UnidentifiedImageError) \
            else f"cannot be opened ({exc})"
        raise DataFormatError(f"{path} {reason}; remove it or replace it with a PNG or "
                              "JPEG file") from None


def _to_8bit(image: Image.Image, path: Path) -> Image.Image:
    """A 16- or 32-bit integer image as 8-bit grey, v * 255 / 65535 rounded; others as they are.

    Raises:
        DataFormatError: floating-point pixels (mode F, whose range is unknowable), or integers
            outside 0..65535.
    """
    if image.mode == "F":
        raise DataFormatError(f"{path} holds floating-point pixels (PIL mode F), whose range "
                              "cnnlab cannot know; save it as an 8- or 16-bit PNG")
    if image.mode not in WIDE_MODES:
        return image
    values = np.asarray(image).astype(np.int64)  # (H, W); I;16B arrives big-endian, made native
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > 65535:
        raise DataFormatError(f"{path} holds pixel values {low}..{high}, outside 16-bit 0..65535; "
                              "save it as an 8- or 16-bit PNG")
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))


def _convert(image: Image.Image, path: Path, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """PIL image -> uint8 (C, H, W) with `channels` (1 or 3) and `size` (H, W)."""
    try:
        image = _to_8bit(image, path).convert("L" if channels == 1 else "RGB")
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


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file, from its header."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path} does not exist or is not a file: check the image path")
    with _open(path) as image:
        return image.size[1], image.size[0]  # PIL gives (W, H)


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
