"""The IDX file format of MNIST and Fashion-MNIST, read with NumPy.

An IDX file is a 4-byte magic number, then one big-endian uint32 per dimension, then the data in
row-major (C) order, big-endian:

    magic = 0x00 0x00 <type code> <number of dimensions>
    type codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64

``train-images-idx3-ubyte`` is therefore ``00 00 08 03``, then 60000, 28, 28, then 47,040,000 bytes.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IDXFormatError(ValueError):
    """The bytes are not a valid IDX file (wrong magic number, truncated, or trailing data)."""


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file into an array of native byte order."""
    if len(raw) < 4:
        raise IDXFormatError(f"{source}: {len(raw)} bytes is too short for an IDX header")
    zero1, zero2, type_code, ndim = raw[:4]
    if zero1 != 0 or zero2 != 0 or type_code not in IDX_DTYPES:
        raise IDXFormatError(
            f"{source}: not an IDX file (magic bytes {raw[:4].hex(' ')}; expected 00 00 <type> <ndim> "
            f"with type in {', '.join(hex(code) for code in IDX_DTYPES)})"
        )
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise IDXFormatError(f"{source}: truncated header ({len(raw)} bytes, need {header_end})")
    shape = struct.unpack(f">{ndim}I", raw[4:header_end])
    dtype = IDX_DTYPES[type_code]
    expected = header_end + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "has trailing bytes"
        raise IDXFormatError(
            f"{source}: {state}: shape {shape} of {dtype} needs {expected:,} bytes, found {len(raw):,}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed (``.gz``) or not."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                raw = stream.read()
        else:
            raw = path.read_bytes()
    except (EOFError, gzip.BadGzipFile) as error:
        raise IDXFormatError(f"{path}: corrupt gzip stream ({error})") from error
    return parse_idx(raw, source=str(path))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when the name ends in ``.gz``).

    The inverse of :func:`read_idx`; the tests use it to make fixture files.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; use one of {list(codes)}")
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(IDX_DTYPES[code], copy=False).tobytes(order="C")
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path
