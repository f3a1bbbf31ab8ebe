"""``DistributedSampler``: which sample indices each rank visits in an epoch."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np


class DistributedSampler:
    """Gives each of ``num_replicas`` ranks a disjoint shard of an epoch's (shuffled) indices.

    Takes the dataset (or its length). All ranks derive the same permutation from
    ``(seed, epoch)`` without communicating; call ``set_epoch(e)`` at the start of every epoch
    to reshuffle (as with PyTorch's sampler, forgetting it repeats epoch 0's order).

    Rank r takes positions r, r + R, r + 2R, ... of the permutation. Without ``drop_last`` the
    permutation is padded by wrapping around so every rank gets ``ceil(n / R)`` samples (a few
    samples are then seen twice per epoch); with ``drop_last`` the tail is dropped so every
    rank gets ``floor(n / R)``. Equal counts matter because in synchronous data-parallel
    training every rank must take the same number of steps.
    """

    def __init__(
        self,
        dataset: Any,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        n = dataset if isinstance(dataset, (int, np.integer)) else len(dataset)
        if n < 0:
            raise ValueError(f"DistributedSampler: dataset length must be >= 0, got {n}")
        if not isinstance(num_replicas, (int, np.integer)) or num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be a positive int, got {num_replicas!r}")
        if not isinstance(rank, (int, np.integer)) or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: rank {rank} is not in [0, {num_replicas})")
        self.n = int(n)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = 0
        self.num_samples = self.n // num_replicas if drop_last else math.ceil(self.n / num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation ``indices()`` returns."""
        self.epoch = int(epoch)

    def permutation(self) -> np.ndarray:
        """The whole epoch's order (the same on every rank), padded or trimmed to ``total_size``."""
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(self.n)
        else:
            order = np.arange(self.n)
        if self.total_size > self.n and self.n:
            order = np.resize(order, self.total_size)  # wrap around to pad
        return order[: self.total_size]

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch."""
        return self.permutation()[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (
            f"DistributedSampler(n={self.n}, num_replicas={self.num_replicas}, rank={self.rank}, "
            f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last}, epoch={self.epoch})"
        )
