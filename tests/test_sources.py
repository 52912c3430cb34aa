"""Named datasets: location order, downloads from a real loopback HTTP server, the mini set."""

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from _data_helpers import closed_port_url, serve, sha256s, write_idx_set
from cnnlab.data import load_dataset
from cnnlab.data.download import download_file
from cnnlab.data.sources import IDX_NAMES, SOURCES, candidate_dirs, fetch
from cnnlab.errors import DataFormatError, DatasetNotFound

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """A private cache, no $CNNLAB_DATA or $CNNLAB_MIRROR from the machine."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.delenv("CNNLAB_MIRROR", raising=False)
    if (Path("/usr/share/datasets") / "mnist").exists():
        pytest.skip("a system-wide mnist would shadow the test folders")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_candidate_dirs_order(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    assert candidate_dirs("mnist", tmp_path / "given") == [
        tmp_path / "given", tmp_path / "given" / "mnist", tmp_path / "env" / "mnist",
        tmp_path / "env", Path("/usr/share/datasets/mnist"), tmp_path / "xdg" / "cnnlab" / "mnist"]


def test_cache_without_xdg_is_home_cache(monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert candidate_dirs("kmnist")[-1] == Path.home() / ".cache" / "cnnlab" / "kmnist"


def test_data_dir_comes_first(tmp_path, monkeypatch):
    arrays = write_idx_set(tmp_path / "given", seed=1)
    write_idx_set(tmp_path / "env" / "mnist", seed=2)
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    ds = load_dataset("mnist", tmp_path / "given", download=False)
    np.testing.assert_array_equal(ds.x_train[:, 0].numpy(), arrays[IDX_NAMES[0]])
    assert ds.y_train.dtype == torch.int64 and ds.classes == [str(d) for d in range(10)]


def test_env_folder_named_or_direct(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    direct = write_idx_set(tmp_path / "env", seed=3)
    assert fetch("mnist", download=False) == tmp_path / "env"
    named = write_idx_set(tmp_path / "env" / "mnist", seed=4)  # <name>/ beats the folder itself
    assert fetch("mnist", download=False) == tmp_path / "env" / "mnist"
    ds = load_dataset("mnist", download=False)
    np.testing.assert_array_equal(ds.x_test[:, 0].numpy(), named[IDX_NAMES[2]])
    assert not np.array_equal(named[IDX_NAMES[2]], direct[IDX_NAMES[2]])


def test_incomplete_folder_is_skipped_and_unzipped_names_count(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    write_idx_set(tmp_path / "env" / "kmnist")
    (tmp_path / "env" / "kmnist" / IDX_NAMES[3]).unlink()  # 3 of 4 files: does not count
    write_idx_set(tmp_path / "xdg" / "cnnlab" / "kmnist", gz=False)  # unzipped names
    assert fetch("kmnist", download=False) == tmp_path / "xdg" / "cnnlab" / "kmnist"
    assert load_dataset("kmnist", download=False).classes[0] == "o"


def test_not_found_offline_lists_every_path(tmp_path):
    with pytest.raises(DatasetNotFound) as info:
        load_dataset("mnist", tmp_path / "given", mirror=closed_port_url(), timeout=5)
    message = str(info.value)
    for folder in candidate_dirs("mnist", tmp_path / "given"):
        assert str(folder) in message
    assert "cannot connect" in message and "train-images-idx3-ubyte.gz" in message
    assert "--data-dir" in message
    assert _leftovers(tmp_path / "xdg" / "cnnlab" / "mnist") == []


def test_download_switched_off(tmp_path):
    with pytest.raises(DatasetNotFound, match="downloading is off"):
        load_dataset("kmnist", download=False)


def test_unknown_name():
    with pytest.raises(DatasetNotFound, match="unknown dataset 'emnist'.*fashion-mnist-mini"):
        load_dataset("emnist")


def test_download_success_with_progress(tmp_path):
    served = tmp_path / "srv" / "mnist"
    arrays = write_idx_set(served, n_train=300, side=28)
    progress = []
    with serve(tmp_path / "srv") as url:
        ds = load_dataset("mnist", mirror=url, checksums=sha256s(served),
                          on_progress=lambda done, total: progress.append((done, total)))
    cache = tmp_path / "xdg" / "cnnlab" / "mnist"
    assert _leftovers(cache) == sorted(IDX_NAMES)  # no temporary files left
    assert sha256s(cache) == sha256s(served)
    np.testing.assert_array_equal(ds.x_train[:, 0].numpy(), arrays[IDX_NAMES[0]])
    total = sum(p.stat().st_size for p in served.iterdir())
    dones = [d for d, _ in progress]
    assert dones == sorted(dones) and progress[-1] == (total, total)
    # a second load finds the cache and needs no server
    assert load_dataset("mnist", download=False).x_train.shape == (300, 1, 28, 28)


def test_env_mirror(tmp_path, monkeypatch):
    served = tmp_path / "srv" / "kmnist"
    write_idx_set(served)
    with serve(tmp_path / "srv") as url:
        monkeypatch.setenv("CNNLAB_MIRROR", url + "/")
        assert fetch("kmnist", checksums=sha256s(served)) == tmp_path / "xdg" / "cnnlab" / "kmnist"


def test_checksum_mismatch_leaves_nothing(tmp_path):
    served = tmp_path / "srv" / "mnist"
    write_idx_set(served)
    checksums = sha256s(served)
    checksums[IDX_NAMES[0]] = "0" * 64
    with serve(tmp_path / "srv") as url, pytest.raises(DataFormatError) as info:
        load_dataset("mnist", mirror=url, checksums=checksums)
    assert "SHA-256" in str(info.value) and IDX_NAMES[0] in str(info.value)
    assert IDX_NAMES[0] not in _leftovers(tmp_path / "xdg" / "cnnlab" / "mnist")
    assert not any(n.endswith(".part") for n in _leftovers(tmp_path / "xdg" / "cnnlab" / "mnist"))


def test_connection_dropped_mid_body_leaves_nothing(tmp_path):
    served = tmp_path / "srv" / "mnist"
    write_idx_set(served, n_train=500, side=28)
    with serve(tmp_path / "srv", drop_mid_body=True) as url, \
            pytest.raises(DatasetNotFound) as info:
        load_dataset("mnist", mirror=url, checksums=sha256s(served), timeout=10)
    assert "closed after" in str(info.value) or "failed midway" in str(info.value)
    assert _leftovers(tmp_path / "xdg" / "cnnlab" / "mnist") == []


def test_http_error_is_reported(tmp_path):
    (tmp_path / "srv").mkdir()
    with serve(tmp_path / "srv") as url, pytest.raises(DatasetNotFound, match="HTTP 404"):
        load_dataset("kmnist", mirror=url, checksums={n: "0" * 64 for n in IDX_NAMES})


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_pinned_raw_sha256_accepts_debians_recompressed_files(tmp_path):
    # Debian recompressed the .gz files: their bytes differ from upstream's, their content not
    for spec in SOURCES["fashion-mnist"].files[1::2]:  # the two small label files
        (tmp_path / "srv").mkdir(exist_ok=True)
        shutil.copy(DEBIAN / spec.name, tmp_path / "srv" / spec.name)
        with serve(tmp_path / "srv") as url:
            got = download_file(f"{url}/{spec.name}", tmp_path / "dl" / spec.name,
                                sha256=spec.sha256, raw_sha256=spec.raw_sha256)
        assert got.read_bytes() == (DEBIAN / spec.name).read_bytes()
        with serve(tmp_path / "srv") as url, pytest.raises(DataFormatError):
            download_file(f"{url}/{spec.name}", tmp_path / "bad" / spec.name,
                          sha256=spec.sha256, raw_sha256="1" * 64)
        assert _leftovers(tmp_path / "bad") == []


def test_fashion_mnist_mini_is_embedded_and_stratified():
    ds = load_dataset("fashion-mnist-mini", download=False)
    assert ds.x_train.shape == (6000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.x_train.dtype == torch.uint8 and ds.y_test.dtype == torch.int64
    assert torch.bincount(ds.y_train).tolist() == [600] * 10
    assert torch.bincount(ds.y_test).tolist() == [100] * 10
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert abs(ds.mean[0] - 0.286) < 0.01 and abs(ds.std[0] - 0.353) < 0.01


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_full_fashion_mnist_from_debian(tmp_path):
    ds = load_dataset("fashion-mnist", download=False)
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert ds.mean[0] == pytest.approx(0.2860, abs=5e-5)
    assert ds.std[0] == pytest.approx(0.3530, abs=5e-5)
    for spec in SOURCES["fashion-mnist"].files:  # the pinned content hashes hold for Debian's
        content = gzip.decompress((DEBIAN / spec.name).read_bytes())
        assert hashlib.sha256(content).hexdigest() == spec.raw_sha256


def test_unwritable_cache_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    served = tmp_path / "srv" / "mnist"
    write_idx_set(served)
    with serve(tmp_path / "srv") as url, pytest.raises(DatasetNotFound, match="cannot write to"):
        load_dataset("mnist", mirror=url, checksums=sha256s(served))


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_a_folder_of_another_named_set_is_refused(tmp_path, monkeypatch):
    # $CNNLAB_DATA pointing at Fashion-MNIST's own folder: the four IDX names match mnist's too,
    # but its test labels are Fashion-MNIST's by their pinned SHA-256
    env = tmp_path / "env"
    env.mkdir()
    for name in IDX_NAMES:
        (env / name).symlink_to(DEBIAN / name)
    monkeypatch.setenv("CNNLAB_DATA", str(env))
    assert fetch("fashion-mnist", download=False) == env
    for other in ("mnist", "kmnist"):
        with pytest.raises(DataFormatError, match=f"holds fashion-mnist's files, not {other}'s"):
            load_dataset(other, download=False)
    # an unzipped copy of the labels is recognised too
    (env / IDX_NAMES[3]).unlink()
    (env / IDX_NAMES[3].removesuffix(".gz")).write_bytes(
        gzip.decompress((DEBIAN / IDX_NAMES[3]).read_bytes()))
    with pytest.raises(DataFormatError, match="fashion-mnist's files"):
        fetch("mnist", download=False)


def test_a_half_full_data_dir_is_named_not_passed_over(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "env" / "mnist", seed=2)  # a complete copy elsewhere
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    write_idx_set(tmp_path / "given")
    (tmp_path / "given" / IDX_NAMES[3]).unlink()
    with pytest.raises(DatasetNotFound) as info:
        load_dataset("mnist", tmp_path / "given", download=False)
    message = str(info.value)
    assert f"{tmp_path / 'given'} holds only part of mnist" in message
    assert f"{IDX_NAMES[3]} is missing" in message and IDX_NAMES[2] not in message
    # an empty --data-dir is searched and passed over, as the search order says
    (tmp_path / "empty").mkdir()
    assert fetch("mnist", tmp_path / "empty", download=False) == tmp_path / "env" / "mnist"


def test_downloaded_files_get_the_umask_mode(tmp_path):
    import os

    served = tmp_path / "srv" / "mnist"
    write_idx_set(served)
    old = os.umask(0o022)
    try:
        with serve(tmp_path / "srv") as url:
            load_dataset("mnist", mirror=url, checksums=sha256s(served))
    finally:
        os.umask(old)
    modes = {p.stat().st_mode & 0o777 for p in (tmp_path / "xdg" / "cnnlab" / "mnist").iterdir()}
    assert modes == {0o644}  # mkstemp alone leaves 0600: unreadable to other users
