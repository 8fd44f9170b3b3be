"""The IDX reader, on generated fixture files and on the real Fashion-MNIST."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from aigc_course.data import IDXFormatError, read_idx, write_idx
from aigc_course.data.idx import parse_idx
from tests.helpers import require


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(2 * 3 * 4) - 7).reshape(2, 3, 4).astype(dtype)
    path = write_idx(tmp_path / f"array-idx3{suffix}", array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_header_is_big_endian_as_in_the_format():
    raw = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))
    np.testing.assert_array_equal(parse_idx(raw), np.arange(6, dtype=np.uint8).reshape(2, 3))
    raw16 = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2]) + bytes([0x01, 0x02, 0xFF, 0xFE])
    np.testing.assert_array_equal(parse_idx(raw16), np.array([258, -2], dtype=np.int16))


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x00\x00", "too short"),
        (b"\x1f\x8b\x08\x00" + bytes(20), "not an IDX file"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 0]), "not an IDX file"),
        (bytes([0, 0, 0x08, 3, 0, 0]), "truncated header"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 5, 1, 2]), "truncated"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 1, 1, 2]), "trailing bytes"),
    ],
)
def test_bad_files_are_refused_with_a_reason(raw, message):
    with pytest.raises(IDXFormatError, match=message):
        parse_idx(raw, source="fixture")


def test_truncated_gzip_is_refused(tmp_path):
    path = write_idx(tmp_path / "labels-idx1.gz", np.arange(1000, dtype=np.uint8) % 10)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(IDXFormatError, match="corrupt gzip stream"):
        read_idx(path)


def test_write_refuses_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="IDX cannot store dtype"):
        write_idx(tmp_path / "x-idx1", np.zeros(3, dtype=np.complex64))


def test_real_fashion_mnist_file_parses():
    path = Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
    require(path.exists(), "Debian's dataset-fashion-mnist is not installed")
    labels = read_idx(path)
    assert labels.shape == (10_000,) and labels.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10
    assert gzip.decompress(path.read_bytes())[:4] == bytes([0, 0, 8, 1])
