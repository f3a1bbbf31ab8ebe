"""The UCI optical-recognition handwritten digits, embedded so training needs no download.

1797 grey-scale 8x8 images (pixel values 0..16) of the digits 0-9, from E. Alpaydin and
C. Kaynak, UCI Machine Learning Repository (1998), CC BY 4.0; the copy in ``digits.csv.gz``
is the one scikit-learn ships (BSD-3-Clause, see ``DIGITS_LICENSE``).
"""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np

from minidl.data.dataset import TensorDataset

N_SAMPLES = 1797


def _raw() -> np.ndarray:
    path = resources.files("minidl.data") / "digits.csv.gz"
    with path.open("rb") as fh, gzip.open(fh) as gz:
        table = np.loadtxt(gz, delimiter=",", dtype=np.float32)
    if table.shape != (N_SAMPLES, 65):
        raise ValueError(f"{path}: expected a 1797x65 table, found shape {table.shape}; the file is damaged")
    return table


def load_digits(split: str = "train", test_fraction: float = 0.2, flatten: bool = True) -> TensorDataset:
    """The digits as a ``TensorDataset`` of (image, label), images scaled to [0, 1].

    The train/test split is fixed (a permutation with seed 0), the same on every machine and rank.
    ``flatten=False`` gives images of shape (1, 8, 8) for convolutional models.
    """
    if split not in ("train", "test"):
        raise ValueError(f"load_digits: split must be 'train' or 'test', got {split!r}")
    table = _raw()
    x = table[:, :64] / 16.0
    y = table[:, 64].astype(np.int64)
    order = np.random.default_rng(0).permutation(N_SAMPLES)
    n_test = int(round(N_SAMPLES * test_fraction))
    idx = order[:n_test] if split == "test" else order[n_test:]
    images = x[idx] if flatten else x[idx].reshape(-1, 1, 8, 8)
    return TensorDataset(np.ascontiguousarray(images), y[idx])
