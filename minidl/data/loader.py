"""``DataLoader``: batches of Tensors from a dataset, shuffled with a seed, optionally sharded."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from minidl.data.sampler import DistributedSampler
from minidl.tensor import Tensor


class DataLoader:
    """Iterates over ``dataset`` in batches of ``batch_size``, yielding tuples of Tensors.

    Pass ``sampler=DistributedSampler(...)`` to shard across ranks; otherwise ``shuffle`` with
    ``seed`` gives a reproducible order that changes each epoch (call ``set_epoch``).
    Indexing is vectorised: the dataset receives a whole index array per batch.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        sampler: DistributedSampler | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: pass shuffle to the sampler, not to the DataLoader")
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler or DistributedSampler(len(dataset), shuffle=shuffle, seed=seed)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        idx = self.sampler.indices()
        for b in range(len(self)):
            batch = self.dataset[idx[b * self.batch_size : (b + 1) * self.batch_size]]
            if not isinstance(batch, tuple):
                batch = (batch,)
            yield tuple(Tensor._make(np.ascontiguousarray(x)) for x in batch)
