"""Map-style datasets: ``Dataset``, ``TensorDataset``, ``Subset`` and ``random_split``.

A dataset may define ``get_batch(indices)`` returning a whole batch (a tuple of arrays) for an
index array; the DataLoader then fetches each batch with one vectorised call instead of one
``__getitem__`` per sample.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from minidl.tensor import Tensor


class Dataset:
    """Anything with ``__len__`` and ``__getitem__(i)`` returning one sample."""

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} does not define __len__")

    def __getitem__(self, index: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define __getitem__")


class TensorDataset(Dataset):
    """Samples are rows of the given arrays, which must all have the same first dimension.

    ``transform`` is applied to the first array's rows and ``target_transform`` to the second's,
    at fetch time (so random augmentation differs every epoch). Both receive a whole batch
    (first dimension = samples) and must return one.
    """

    def __init__(
        self,
        *arrays: Any,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        target_transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        self.arrays = [a.data if isinstance(a, Tensor) else np.asarray(a) for a in arrays]
        lengths = [len(a) if a.ndim else -1 for a in self.arrays]
        if min(lengths) < 0 or len(set(lengths)) != 1:
            raise ValueError(f"TensorDataset: arrays must share their first dimension, got shapes {self.shapes()}")
        if target_transform is not None and len(self.arrays) < 2:
            raise ValueError("TensorDataset: target_transform given but there is no second (target) array")
        self.transform = transform
        self.target_transform = target_transform

    def shapes(self) -> list[tuple[int, ...]]:
        return [a.shape for a in self.arrays]

    def __len__(self) -> int:
        return len(self.arrays[0])

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        out = [a[indices] for a in self.arrays]
        if self.transform is not None:
            out[0] = self.transform(out[0])
        if self.target_transform is not None:
            out[1] = self.target_transform(out[1])
        return tuple(out)

    def __getitem__(self, index: Any) -> tuple[np.ndarray, ...]:
        if isinstance(index, (int, np.integer)):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"TensorDataset index {index} out of range for {n} samples")
            return tuple(a[0] for a in self.get_batch(np.array([index])))
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        return self.get_batch(np.asarray(index))

    def __repr__(self) -> str:
        return f"TensorDataset({len(self)} samples, shapes {self.shapes()})"


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset: Any, indices: Sequence[int] | np.ndarray) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        n = len(dataset)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n):
            raise IndexError(f"Subset: indices must be in [0, {n}), got {self.indices.min()}..{self.indices.max()}")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: Any) -> Any:
        return self.dataset[self.indices[index]]

    def get_batch(self, indices: np.ndarray) -> Any:
        inner = self.indices[indices]
        fetch = getattr(self.dataset, "get_batch", None)
        if fetch is not None:
            return fetch(inner)
        from minidl.data.loader import default_collate_arrays

        return default_collate_arrays([self.dataset[int(i)] for i in inner])


def random_split(dataset: Any, lengths: Sequence[int | float], seed: int = 0) -> list[Subset]:
    """Split into non-overlapping random subsets of the given lengths (or fractions summing to 1)."""
    n = len(dataset)
    if all(isinstance(x, float) for x in lengths) and abs(sum(lengths) - 1.0) < 1e-9:
        sizes = [int(np.floor(n * f)) for f in lengths]
        for i in range(n - sum(sizes)):  # hand out the remainder round-robin, like PyTorch
            sizes[i % len(sizes)] += 1
    else:
        sizes = [int(x) for x in lengths]
    if sum(sizes) != n or min(sizes, default=0) < 0:
        raise ValueError(f"random_split: lengths {list(lengths)} do not add up to the dataset's {n} samples")
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum([0, *sizes])
    return [Subset(dataset, order[a:b]) for a, b in itertools.pairwise(bounds)]
