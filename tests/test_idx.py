"""IDX parsing: round trips and every malformed case, on real files."""

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.data.idx import encode_idx, parse_idx, read_idx, read_idx_pair, write_idx
from cnnlab.errors import DataFormatError


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["images-idx3-ubyte.gz", "images-idx3-ubyte"])
def test_round_trip(tmp_path, name):
    array = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.uint8 and back.shape == (7, 5, 3)
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable  # so torch.from_numpy takes it without a warning


def test_gzip_detected_by_magic_not_name(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = encode_idx(array)
    gz_named_raw = _write(tmp_path / "a.gz", raw)
    raw_named_gz = _write(tmp_path / "b-idx3-ubyte", gzip.compress(raw))
    np.testing.assert_array_equal(read_idx(gz_named_raw), array)
    np.testing.assert_array_equal(read_idx(raw_named_gz), array)


def test_gzip_output_is_reproducible(tmp_path):
    array = np.arange(100, dtype=np.uint8).reshape(4, 25)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.integers(0, 2**31))
def test_round_trip_any_shape(dims, seed):
    array = np.random.default_rng(seed).integers(0, 256, dims, dtype=np.uint8)
    np.testing.assert_array_equal(parse_idx(encode_idx(array), "x"), array)
    np.testing.assert_array_equal(parse_idx(gzip.compress(encode_idx(array)), "x"), array)


def _error(tmp_path, data: bytes, name="train-images-idx3-ubyte.gz") -> str:
    path = _write(tmp_path / name, data)
    with pytest.raises(DataFormatError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message  # every error names the file
    return message


def test_bad_magic(tmp_path):
    data = bytearray(encode_idx(np.zeros((2, 2, 2), np.uint8)))
    data[0] = 0x12
    assert "not an IDX file" in _error(tmp_path, bytes(data))


def test_wrong_type_code_is_unsupported(tmp_path):
    data = bytearray(encode_idx(np.zeros((2, 2), np.uint8)))
    data[2] = 0x0D  # float32
    message = _error(tmp_path, bytes(data))
    assert "0x0d" in message and "float32" in message and "not support" in message


def test_zero_dimensions(tmp_path):
    assert "0 dimensions" in _error(tmp_path, bytes([0, 0, 8, 0]))


def test_truncated_header(tmp_path):
    assert "truncated inside its header" in _error(tmp_path, bytes([0, 0, 8, 3, 0, 0, 0, 2]))


def test_truncated_data_says_how_much(tmp_path):
    header = encode_idx(np.zeros((60000, 28, 28), np.uint8))[:16]
    message = _error(tmp_path, gzip.compress(header + bytes(1000)))
    assert "truncated" in message
    assert "60000x28x28 = 47,040,000 bytes but 1,000 follow" in message
    assert "download it again" in message


def test_a_huge_header_gets_its_true_product(tmp_path):
    header = bytes([0, 0, 8, 3]) + b"\xff\xff\xff\xff" * 3  # (2**32 - 1)**3: past int64
    message = _error(tmp_path, header + bytes(10))
    assert f"= {(2 ** 32 - 1) ** 3:,} bytes but 10 follow" in message


def test_trailing_bytes(tmp_path):
    data = encode_idx(np.zeros((3, 4, 4), np.uint8)) + b"extra"
    assert "5 trailing bytes" in _error(tmp_path, data)


def test_corrupt_gzip(tmp_path):
    data = bytearray(gzip.compress(encode_idx(np.arange(256, dtype=np.uint8).reshape(4, 8, 8))))
    data[len(data) // 2] ^= 0xFF  # damage the deflate stream
    assert "not a valid gzip file" in _error(tmp_path, bytes(data))


def test_cut_short_gzip(tmp_path):
    data = gzip.compress(encode_idx(np.arange(256, dtype=np.uint8).reshape(4, 8, 8)))
    assert "not a valid gzip file" in _error(tmp_path, data[: len(data) - 12])


def test_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match="cannot be read"):
        read_idx(tmp_path / "nope.gz")


def _pair(tmp_path, images, labels, num_classes=10):
    write_idx(tmp_path / "img.gz", images)
    write_idx(tmp_path / "lbl.gz", labels)
    return read_idx_pair(tmp_path / "img.gz", tmp_path / "lbl.gz", num_classes)


def test_pair_reads(tmp_path):
    images = np.zeros((5, 3, 3), np.uint8)
    labels = np.array([0, 1, 2, 3, 9], np.uint8)
    x, y = _pair(tmp_path, images, labels)
    assert x.shape == (5, 3, 3) and y.tolist() == [0, 1, 2, 3, 9]


def test_pair_count_mismatch(tmp_path):
    with pytest.raises(DataFormatError, match="5 images but .* 4 labels"):
        _pair(tmp_path, np.zeros((5, 3, 3), np.uint8), np.zeros(4, np.uint8))


def test_pair_label_out_of_range(tmp_path):
    labels = np.array([0, 1, 10, 3], np.uint8)
    with pytest.raises(DataFormatError, match="label 10 at position 2 .* 10 classes"):
        _pair(tmp_path, np.zeros((4, 3, 3), np.uint8), labels)


def test_pair_images_must_be_3d(tmp_path):
    with pytest.raises(DataFormatError, match="images must be 3-D"):
        _pair(tmp_path, np.zeros((4, 9), np.uint8), np.zeros(4, np.uint8))


def test_pair_labels_must_be_1d(tmp_path):
    with pytest.raises(DataFormatError, match="labels must be 1-D"):
        _pair(tmp_path, np.zeros((4, 3, 3), np.uint8), np.zeros((4, 1), np.uint8))
