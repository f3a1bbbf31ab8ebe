"""Map-style datasets."""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl.tensor import Tensor


class Dataset:
    """Anything with ``__len__`` and ``__getitem__``; ``__getitem__`` may take an index array."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: Any) -> Any:
        raise NotImplementedError


class TensorDataset(Dataset):
    """Samples are rows of the given arrays, which must all have the same first dimension."""

    def __init__(self, *arrays: Any) -> None:
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        self.arrays = [a.data if isinstance(a, Tensor) else np.asarray(a) for a in arrays]
        n = len(self.arrays[0])
        for a in self.arrays:
            if len(a) != n:
                raise ValueError(f"TensorDataset: arrays have different lengths {[len(x) for x in self.arrays]}")

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index: Any) -> tuple[np.ndarray, ...]:
        return tuple(a[index] for a in self.arrays)
