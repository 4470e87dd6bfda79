"""The IDX file format of MNIST and Fashion-MNIST (LeCun et al., 1998).

Header: two zero bytes, a type code, the number of dimensions, then each dimension as a
big-endian uint32; the data follow in C order. Files may be gzipped. A file whose
length does not match its header is reported as truncated (or padded), naming it.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from coach.atomic import atomic_write_bytes
from coach.errors import UserError

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_file_in(d: Path, name: str) -> bool:
    """The IDX file `name` is in folder d, as it is or gzipped."""
    return (d / name).exists() or (d / f"{name}.gz").exists()


_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"{path}: cannot read IDX file ({e}); the file is corrupt or truncated") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise UserError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_TYPES[raw[2]])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise UserError(f"{path}: IDX file {what}: {len(raw)} bytes, header implies {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write an array in IDX format (gzipped when the name ends in .gz); used by tests."""
    code = {np.dtype(v).newbyteorder("="): k for k, v in _TYPES.items()}[array.dtype.newbyteorder("=")]
    big = array.astype(np.dtype(_TYPES[code]))
    data = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + big.tobytes()
    path = Path(path)
    atomic_write_bytes(path, gzip.compress(data) if path.suffix == ".gz" else data)
