"""``DataLoader``: batches of Tensors from a dataset, shuffled with a seed, optionally sharded."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from minidl.data.sampler import DistributedSampler
from minidl.tensor import Tensor


def default_collate_arrays(samples: Sequence[Any]) -> tuple[np.ndarray, ...]:
    """Stack a list of samples (each an array or a tuple of arrays/numbers) field by field."""
    if not samples:
        raise ValueError("collate: empty batch")
    first = samples[0]
    if isinstance(first, (tuple, list)):
        width = len(first)
        for s in samples:
            if not isinstance(s, (tuple, list)) or len(s) != width:
                raise ValueError(f"collate: samples have different numbers of fields ({width} and {len(s)})")
        return tuple(_stack([s[i] for s in samples], i) for i in range(width))
    return (_stack(list(samples), 0),)


def _stack(values: list[Any], field: int) -> np.ndarray:
    arrays = [v.data if isinstance(v, Tensor) else np.asarray(v) for v in values]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"collate: field {field} has samples of different shapes {sorted(shapes)}")
    return np.stack(arrays)


def default_collate(samples: Sequence[Any]) -> tuple[Tensor, ...]:
    """Stack samples into a tuple of Tensors, one per field (images, labels, ...)."""
    return tuple(Tensor._make(np.ascontiguousarray(a)) for a in default_collate_arrays(samples))


class DataLoader:
    """Iterates over ``dataset`` in batches of ``batch_size``, yielding tuples of Tensors.

    - ``shuffle=True``: a new permutation every epoch, derived from ``(seed, epoch)``, so runs are
      reproducible. The epoch advances by one each time the loader is iterated; ``set_epoch(e)``
      chooses it explicitly (do that when resuming from a checkpoint).
    - ``sampler=DistributedSampler(...)``: shard across ranks; then shuffling is the sampler's
      business and, as in PyTorch, you call ``sampler.set_epoch(e)`` (or ``loader.set_epoch(e)``)
      every epoch.
    - A dataset with ``get_batch(indices)`` is fetched one vectorised call per batch; any other
      dataset one ``__getitem__`` per sample, stacked by ``collate_fn`` (default: stack each field
      into a Tensor).
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        sampler: DistributedSampler | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: pass shuffle to the sampler, not to the DataLoader")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.drop_last = drop_last
        self.collate_fn = collate_fn
        self._own_sampler = sampler is None
        self._start_batch = 0
        self.sampler = sampler or DistributedSampler(len(dataset), shuffle=shuffle, seed=seed)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Use ``epoch``'s permutation for the next pass, beginning at batch ``start_batch``.

        ``start_batch`` resumes mid-epoch from a checkpoint: the skipped batches are not
        fetched, so they consume no augmentation randomness.
        """
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"DataLoader.set_epoch: start_batch must be in [0, {len(self)}], got {start_batch}")
        self.sampler.set_epoch(epoch)
        self._start_batch = int(start_batch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def fetch(self, indices: np.ndarray) -> Any:
        """The batch for an array of sample indices, as the loader yields it."""
        get_batch = getattr(self.dataset, "get_batch", None)
        if get_batch is not None and self.collate_fn is None:
            batch = get_batch(indices)
            batch = batch if isinstance(batch, tuple) else (batch,)
            return tuple(Tensor._make(np.ascontiguousarray(x)) for x in batch)
        samples = [self.dataset[int(i)] for i in indices]
        return (self.collate_fn or default_collate)(samples)

    def __iter__(self) -> Iterator[Any]:
        idx = self.sampler.indices()
        start, self._start_batch = self._start_batch, 0
        if self._own_sampler:
            self.sampler.epoch += 1  # the next pass reshuffles (set_epoch overrides)
        for b in range(start, len(self)):
            yield self.fetch(idx[b * self.batch_size : (b + 1) * self.batch_size])
