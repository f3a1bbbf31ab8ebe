"""MNIST and Fashion-MNIST from IDX files (gzip-compressed or raw) in a directory you provide.

The IDX format (LeCun et al.): two zero bytes, a type code (0x08 = unsigned byte, ...), the
number of dimensions, then each dimension as a big-endian uint32, then the data. Every check
here names the file and what is wrong with it, so a truncated download or a renamed file is
caught at load time rather than as a strange accuracy later.

Nothing is downloaded: put ``train-images-idx3-ubyte(.gz)``, ``train-labels-idx1-ubyte(.gz)``,
``t10k-images-idx3-ubyte(.gz)`` and ``t10k-labels-idx1-ubyte(.gz)`` in one directory (the
torchvision layout ``<root>/MNIST/raw`` and ``<root>/FashionMNIST/raw`` is found too).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from minidl.data.dataset import TensorDataset

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SUBDIRS = {"mnist": "MNIST", "fashion": "FashionMNIST"}
IMAGE_SHAPE = (28, 28)


class DataFileError(ValueError):
    """A data file is missing, corrupt, truncated or not what it claims to be."""


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataFileError(f"{path}: cannot read: {e.strerror or e}") from None
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataFileError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return raw


def read_idx(path: str | os.PathLike, expected_type: int | None = None, expected_ndim: int | None = None) -> np.ndarray:
    """The array stored in an IDX file, with its magic number and size checked."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataFileError(f"{path}: truncated: {len(data)} bytes, too short for an IDX header")
    if data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DataFileError(
            f"{path}: not an IDX file: magic number 0x{data[:4].hex()} (expected 0x0000TTDD with type TT in "
            f"{', '.join(f'{t:02x}' for t in _DTYPES)})"
        )
    type_code, ndim = data[2], data[3]
    magic = f"0x{data[:4].hex()}"
    if expected_type is not None and type_code != expected_type:
        raise DataFileError(
            f"{path}: magic number {magic} has data type 0x{type_code:02x}, expected 0x{expected_type:02x}"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataFileError(f"{path}: magic number {magic} says {ndim} dimension(s), expected {expected_ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFileError(f"{path}: truncated: the header needs {header} bytes, the file has {len(data)}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[type_code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found < expected:
        raise DataFileError(f"{path}: truncated: dimensions {dims} need {expected} bytes of data, the file has {found}")
    if found > expected:
        raise DataFileError(f"{path}: {found - expected} unexpected bytes after the {expected} bytes of data {dims}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str, kind: str) -> Path:
    for folder in (root, root / _SUBDIRS[kind] / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(
        f"{stem}(.gz) not found in {root} (nor in {root / _SUBDIRS[kind] / 'raw'}); minidl does not download "
        f"data: place the four {_SUBDIRS[kind]} IDX files there"
    )


def _load(root: str | os.PathLike, split: str, flatten: bool, kind: str, num_classes: int = 10) -> TensorDataset:
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    image_path, label_path = (_find(root, stem, kind) for stem in _FILES[split])
    images = read_idx(image_path, expected_type=0x08, expected_ndim=3)
    labels = read_idx(label_path, expected_type=0x08, expected_ndim=1)
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataFileError(f"{image_path}: images are {images.shape[1:]}, expected {IMAGE_SHAPE}")
    if len(images) != len(labels):
        raise DataFileError(
            f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels; "
            "the two files do not belong together"
        )
    if labels.size and labels.max() >= num_classes:
        raise DataFileError(f"{label_path}: label {labels.max()} out of range for {num_classes} classes")
    x = images.astype(np.float32) / 255.0
    x = x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, *IMAGE_SHAPE)
    return TensorDataset(x, labels.astype(np.int64))


def load_mnist(root: str | os.PathLike, split: str = "train", flatten: bool = False) -> TensorDataset:
    """MNIST handwritten digits: images (N, 1, 28, 28) (or (N, 784) with ``flatten``) in [0, 1], labels 0-9."""
    return _load(root, split, flatten, "mnist")


def load_fashion_mnist(root: str | os.PathLike, split: str = "train", flatten: bool = False) -> TensorDataset:
    """Fashion-MNIST (Zalando): same format and shapes as MNIST; labels 0-9 are clothing classes."""
    return _load(root, split, flatten, "fashion")
