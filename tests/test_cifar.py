"""CIFAR-10 python batches: read from the tarball or folders, and no code runs from a pickle."""

import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from cnnlab.data import load_dataset
from cnnlab.data.cifar import ARCHIVE, BATCHES, FOLDER, parse_batch
from cnnlab.errors import DataFormatError


def _batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"x", b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"a"] * n}


def _write_tarball(folder, protocol: int, n: int = 4) -> dict:
    batches = {name: _batch(n, i) for i, name in enumerate(BATCHES)}
    with tarfile.open(folder / ARCHIVE, "w:gz") as tar:
        for name, batch in batches.items():
            data = pickle.dumps(batch, protocol=protocol)
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return batches


@pytest.mark.parametrize("protocol", [2, 4, 5])  # 5: pickle.HIGHEST_PROTOCOL, numeric._frombuffer
def test_tarball_loads(tmp_path, protocol, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    batches = _write_tarball(tmp_path, protocol)
    ds = load_dataset("cifar10", tmp_path, download=False)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    assert ds.classes[0] == "airplane" and ds.num_classes == 10
    first = batches["data_batch_1"]
    # a row is 1024 red, 1024 green, 1024 blue values, each plane row-major
    np.testing.assert_array_equal(ds.x_train[0, 1].numpy().ravel(), first[b"data"][0, 1024:2048])
    assert ds.y_train[:4].tolist() == first[b"labels"]
    assert ds.y_test.tolist() == batches["test_batch"][b"labels"]
    assert ds.y_train.dtype == torch.int64


def test_extracted_folder_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / FOLDER).mkdir()
    for i, name in enumerate(BATCHES):
        (tmp_path / FOLDER / name).write_bytes(pickle.dumps(_batch(3, i), protocol=2))
    assert load_dataset("cifar10", tmp_path, download=False).x_train.shape == (15, 3, 32, 32)


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def test_code_in_a_pickle_is_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2)
    with pytest.raises(DataFormatError, match="is not a CIFAR-10 batch .*not allowed"):
        parse_batch(data, "evil_batch")
    assert not marker.exists()


def test_wrong_shapes_are_reported():
    batch = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    with pytest.raises(DataFormatError, match="N x 3072"):
        parse_batch(pickle.dumps(batch, protocol=2), "b")
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}
    with pytest.raises(DataFormatError, match="2 images but labels"):
        parse_batch(pickle.dumps(batch, protocol=2), "b")
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [12]}
    with pytest.raises(DataFormatError, match="outside 0..9"):
        parse_batch(pickle.dumps(batch, protocol=2), "b")


def test_archive_missing_a_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with tarfile.open(tmp_path / ARCHIVE, "w:gz") as tar:
        data = pickle.dumps(_batch(2, 0))
        info = tarfile.TarInfo(f"{FOLDER}/data_batch_1")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataFormatError, match="lacks data_batch_2"):
        load_dataset("cifar10", tmp_path, download=False)


def test_corrupt_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / ARCHIVE).write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataFormatError, match="not a readable tar.gz"):
        load_dataset("cifar10", tmp_path, download=False)
