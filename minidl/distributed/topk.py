"""Top-k sparsification with error feedback: each rank sends only its k largest gradient entries.

Per bucket, a rank adds its residual (what it did not send before) to its gradient, picks the
k = ceil(ratio * n) entries of largest magnitude, and keeps the rest as its new residual (error
feedback, as in Stich et al. 2018 and Lin et al.'s Deep Gradient Compression: small entries
accumulate until they are large enough to be sent, so nothing is lost, only delayed; a residual
holding NaN or Inf is dropped, see :func:`~minidl.distributed.hooks.keep_if_finite`).

Different ranks pick different indices, so the sparse vectors cannot be summed by an allreduce
on the way (the sum of two k-sparse vectors is up to 2k-sparse). They are allgathered instead:
every rank sends its k values and k int32 indices, receives everyone's, and adds them into a
zeroed bucket locally, in rank order, so every rank computes the same bits. The payload per rank
is k x (itemsize + 4) bytes (``wire_bytes``); a ring allgather moves p - 1 such payloads per
rank, where a ring allreduce of the dense bucket moves 2(p - 1)/p x n x itemsize: top-k pays
while ratio < 2 itemsize / (p (itemsize + 4)), which is 1/p for float32 (1/4 at p = 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from minidl.distributed.hooks import GradBucket, keep_if_finite

INDEX = np.dtype(np.int32)


@dataclass
class TopKState:
    """Top-k's setting (the fraction of each bucket sent) and the residual of every bucket."""

    ratio: float = 0.01
    error_feedback: bool = True
    residuals: dict[int, np.ndarray] = field(default_factory=dict)  # bucket index -> flat residual

    def __post_init__(self) -> None:
        if not (isinstance(self.ratio, (int, float)) and 0 < self.ratio <= 1):
            raise ValueError(f"top-k: ratio must be a number in (0, 1], got {self.ratio!r}")

    def k(self, n: int) -> int:
        """Entries sent from a bucket of ``n`` (at least one, at most all)."""
        return min(n, max(1, math.ceil(self.ratio * n)))


def topk_hook(state: TopKState, bucket: GradBucket) -> None:
    """Replace the bucket by the average of every rank's top-k entries, in place; see the module."""
    grads = bucket.buffer
    n = grads.size
    if n > np.iinfo(INDEX).max:
        raise ValueError(f"top-k: a bucket of {n} elements cannot be indexed with int32; use a smaller --bucket-mb")
    if state.error_feedback and bucket.index in state.residuals:
        grads += state.residuals[bucket.index]
    k = state.k(n)
    chosen = np.argpartition(np.abs(grads), n - k)[n - k :].astype(INDEX)
    itemsize = grads.dtype.itemsize
    payload = np.empty(k * (itemsize + INDEX.itemsize), np.uint8)
    payload[: k * itemsize].view(grads.dtype)[...] = grads[chosen]
    payload[k * itemsize :].view(INDEX)[...] = chosen
    if state.error_feedback:
        residual = grads.copy()
        residual[chosen] = 0
        keep_if_finite(state.residuals, bucket.index, residual)

    rows = bucket.all_gather(payload)  # row r: rank r's values, then its indices
    values = rows[:, : k * itemsize].copy().view(grads.dtype)
    indices = rows[:, k * itemsize :].copy().view(INDEX)
    grads[...] = 0
    np.add.at(grads, indices.reshape(-1), values.reshape(-1))  # rank by rank, in order: the same bits everywhere
    grads /= bucket.comm.Get_size()
    bucket.wire_bytes = payload.nbytes
