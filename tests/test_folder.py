"""Class-per-folder datasets from real PNG and JPEG files, and single-image loading."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import load_dataset, load_folder, load_image
from cnnlab.errors import DataFormatError


def _save(path, mode="L", size=(10, 8), value=100, fmt=None):
    """Write a one-colour image; size is PIL's (W, H)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode in ("L", "P") else (value,) * len(mode)
    image = Image.new(mode, size, colour)
    image.save(path, format=fmt)
    return path


def _tree(root, classes=("cat", "dog", "emu"), per_class=5, mode="L", size=(10, 8)):
    for c, name in enumerate(classes):
        for i in range(per_class):
            _save(root / name / f"{i}.png", mode, size, value=40 * c + i)
    return root


def test_grey_tree_with_split_and_hidden_entries(tmp_path):
    root = _tree(tmp_path / "pets", per_class=10)
    _save(root / ".ipynb_checkpoints" / "x.png")  # hidden folder: not a class
    (root / "cat" / ".DS_Store").write_bytes(b"\0junk")  # hidden file: not an image
    ds = load_folder(root, seed=1)
    assert ds.classes == ["cat", "dog", "emu"] and ds.name == "pets"
    assert ds.input_shape == (1, 8, 10) and ds.x_train.dtype == torch.uint8
    assert torch.bincount(ds.y_test).tolist() == [2, 2, 2]  # 20% of each class
    assert torch.bincount(ds.y_train).tolist() == [8, 8, 8]
    # pixel values follow their class (value 40*c + i), so labels match images
    assert ((ds.x_train[:, 0, 0, 0].long() // 40) == ds.y_train).all()
    again = load_folder(root, seed=1)
    assert torch.equal(again.x_test, ds.x_test)
    assert not torch.equal(load_folder(root, seed=2).x_test, ds.x_test)


def test_mixed_modes_and_sizes_go_rgb_at_the_most_common_size(tmp_path):
    root = tmp_path / "mixed"
    _save(root / "a" / "1.png", "L", (10, 8), 10)
    _save(root / "a" / "2.png", "RGBA", (10, 8), 20)
    _save(root / "a" / "3.jpg", "RGB", (30, 20), 30, fmt="JPEG")
    _save(root / "b" / "1.png", "P", (10, 8), 3)
    _save(root / "b" / "2.png", "RGB", (10, 8), 50)
    ds = load_folder(root, test_fraction=0.5)
    assert ds.input_shape == (3, 8, 10)
    assert len(ds.x_train) + len(ds.x_test) == 5
    forced = load_folder(root, test_fraction=0.5, channels=1, size=16)
    assert forced.input_shape == (1, 16, 16)


def test_train_and_test_subtrees(tmp_path):
    root = tmp_path / "split"
    _tree(root / "train", classes=("x", "y"), per_class=3)
    _tree(root / "test", classes=("x", "y"), per_class=2)
    ds = load_dataset(f"folder:{root}")
    assert len(ds.x_train) == 6 and len(ds.x_test) == 4 and ds.classes == ["x", "y"]
    assert ds.y_test.tolist() == [0, 0, 1, 1]


def test_subtrees_need_the_same_classes(tmp_path):
    root = tmp_path / "split"
    _tree(root / "train", classes=("x", "y"))
    _tree(root / "test", classes=("x", "z"))
    with pytest.raises(DataFormatError, match="same class folders"):
        load_folder(root)


def test_train_without_test(tmp_path):
    _tree(tmp_path / "only" / "train")
    with pytest.raises(DataFormatError, match="has train/ but no test/"):
        load_folder(tmp_path / "only")


def test_empty_class_folder(tmp_path):
    root = _tree(tmp_path / "d")
    (root / "fox").mkdir()
    with pytest.raises(DataFormatError, match=f"class folder {root / 'fox'} holds no images"):
        load_folder(root)


def test_file_that_is_not_an_image(tmp_path):
    root = _tree(tmp_path / "d")
    (root / "dog" / "notes.png").write_text("not a picture")
    with pytest.raises(DataFormatError, match="notes.png is not an image PIL can read"):
        load_folder(root)


def test_files_that_are_not_images_by_name_are_skipped_and_counted(tmp_path, caplog):
    root = _tree(tmp_path / "d")
    (root / "dog" / "notes.txt").write_text("taken on a sunny day")
    (root / "cat" / "Thumbs.db").write_bytes(b"\0\1junk")
    with caplog.at_level("WARNING", logger="cnnlab.data.folder"):
        ds = load_folder(root)
    assert len(ds.x_train) + len(ds.x_test) == 15
    assert "skipped 2 files whose extension is no image format (e.g. " in caplog.text
    (root / "fox").mkdir()
    (root / "fox" / "readme.md").write_text("fox pictures to come")  # nothing to learn a fox from
    with pytest.raises(DataFormatError, match=f"class folder {root / 'fox'} holds no images"):
        load_folder(root)


def test_truncated_image(tmp_path):
    root = _tree(tmp_path / "d", size=(64, 64))
    _save(root / "dog" / "big.jpg", "RGB", (64, 64), fmt="JPEG")
    data = (root / "dog" / "big.jpg").read_bytes()
    (root / "dog" / "big.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="big.jpg"):
        load_folder(root)


def test_no_class_folders_and_single_class(tmp_path):
    (tmp_path / "flat").mkdir()
    _save(tmp_path / "flat" / "1.png")
    with pytest.raises(DataFormatError, match="has no class folders"):
        load_folder(tmp_path / "flat")
    _tree(tmp_path / "one", classes=("solo",))
    with pytest.raises(DataFormatError, match="single class folder \\(solo\\)"):
        load_folder(tmp_path / "one")
    with pytest.raises(DataFormatError, match="is not a folder"):
        load_folder(tmp_path / "missing")


def test_load_image_converts_like_training(tmp_path):
    path = tmp_path / "photo.png"
    array = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(array, "RGB").save(path)
    rgb = load_image(path, 3, (20, 30))
    assert rgb.shape == (3, 20, 30) and torch.equal(rgb, torch.from_numpy(array).permute(2, 0, 1))
    grey = load_image(path, 1, 28)
    expected = Image.fromarray(array, "RGB").convert("L").resize((28, 28), Image.BILINEAR)
    assert grey.shape == (1, 28, 28) and torch.equal(grey[0], torch.from_numpy(np.array(expected)))
    (tmp_path / "x.png").write_text("text")
    with pytest.raises(DataFormatError, match="x.png is not an image"):
        load_image(tmp_path / "x.png", 1, 28)


def test_load_image_of_a_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataFormatError, match=r"missing\.png does not exist.*check the image path"):
        load_image(tmp_path / "missing.png", 1, 28)
    with pytest.raises(DataFormatError, match="is not a file"):
        load_image(tmp_path, 1, 28)


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    # a 0..65535 ramp as a 16-bit PNG (PIL mode I;16) and a big-endian TIFF (I;16B); PIL's own
    # convert("L") clips such values, leaving only 0 and 255
    ramp = np.linspace(0, 65535, 16 * 16).round().astype(np.uint16).reshape(16, 16)
    expected = torch.from_numpy(((ramp.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    Image.frombytes("I;16B", (16, 16), ramp.astype(">u2").tobytes()).save(tmp_path / "ramp.tif")
    for name in ("ramp.png", "ramp.tif"):
        assert torch.equal(load_image(tmp_path / name, 1, 16)[0], expected), name
        rgb = load_image(tmp_path / name, 3, 16)
        assert all(torch.equal(rgb[c], expected) for c in range(3)), name
    root = tmp_path / "scans"
    for label, level in (("dark", 8000), ("bright", 50000)):
        for i in range(4):
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8), level + i, np.uint16)).save(root / label / f"{i}.png")
    ds = load_folder(root, test_fraction=0.25)
    assert ds.input_shape == (1, 8, 8)
    by_class = {ds.classes[int(y)]: int(x.max()) for x, y in zip(ds.x_train, ds.y_train)}
    assert by_class == {"dark": 31, "bright": 195}  # 8003 * 255 / 65535 and 50003 * 255 / 65535


def test_float_and_out_of_range_images_are_refused(tmp_path):
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(DataFormatError, match=r"f\.tif holds floating-point pixels"):
        load_image(tmp_path / "f.tif", 1, 8)
    Image.fromarray(np.full((8, 8), 70000, np.int32)).save(tmp_path / "i.tif")
    with pytest.raises(DataFormatError, match=r"i\.tif holds pixel values 70000\.\.70000"):
        load_image(tmp_path / "i.tif", 1, 8)


def test_images_in_nested_folders_belong_to_their_class(tmp_path):
    root = _tree(tmp_path / "d", per_class=2)
    for i in range(3):
        _save(root / "cat" / "2024" / "may" / f"{i}.png", value=7)
    (root / "cat" / "2024" / "loop").symlink_to(root / "cat")  # a cycle is read once
    (root / "dog" / "report.pdf").write_bytes(b"%PDF-1.4")  # PIL writes PDFs but cannot read them
    ds = load_folder(root, test_fraction=0.2)
    labels = torch.cat([ds.y_train, ds.y_test])
    assert torch.bincount(labels).tolist() == [5, 2, 2]


def test_an_image_too_large_to_decode_safely_is_named(tmp_path, monkeypatch):
    root = _tree(tmp_path / "d", size=(8, 8))
    _save(root / "dog" / "huge.png", size=(64, 64))
    # PIL refuses images over 2 x MAX_IMAGE_PIXELS (179 megapixels by default) when opening
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataFormatError, match=r"huge\.png is too large to decode safely"):
        load_folder(root)
