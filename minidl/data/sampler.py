"""Samplers: which sample indices a rank visits in an epoch."""

from __future__ import annotations

import math

import numpy as np


class DistributedSampler:
    """Gives each of ``num_replicas`` ranks a disjoint shard of an epoch's (shuffled) indices.

    All ranks derive the same permutation from ``seed + epoch`` without communicating; call
    ``set_epoch(e)`` each epoch to reshuffle. Without ``drop_last``, the index list is padded by
    wrapping around so every rank gets the same number of samples (as PyTorch does), because in
    synchronous data-parallel training every rank must take the same number of steps.
    """

    def __init__(
        self,
        dataset_len: int,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: rank {rank} is not in [0, {num_replicas})")
        self.n = int(dataset_len)
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        if drop_last:
            self.num_samples = self.n // num_replicas
        else:
            self.num_samples = math.ceil(self.n / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> np.ndarray:
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(self.n)
        else:
            order = np.arange(self.n)
        total = self.num_samples * self.num_replicas
        if total > self.n and self.n:
            order = np.resize(order, total)  # wrap around to pad
        order = order[:total]
        return order[self.rank : total : self.num_replicas]

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples
