"""Gradient buckets: flat contiguous buffers that a model's gradients live in during sync.

One allreduce per bucket instead of one per parameter: a ResNet has dozens of small tensors,
and each message pays the full latency. Buckets are filled in reverse registration order,
which is roughly the order in which backward produces gradients, so the first bucket can be
sent while the rest of backward is still running. The first bucket is kept small (as in
PyTorch) so that communication starts as early as possible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minidl.nn.module import Parameter


@dataclass
class Bucket:
    """Parameters whose gradients are reduced together in one allreduce of ``flat``."""

    index: int
    params: list[Parameter]
    flat: np.ndarray
    views: list[np.ndarray]  # views[i] is params[i]'s gradient, inside ``flat``
    # ``flat`` may end with spare elements after the views (see ``build_buckets(extra_last=)``)
    ready: list[bool] = field(default_factory=list)
    pending: int = 0

    @property
    def nbytes(self) -> int:
        return self.flat.nbytes

    def reset(self) -> None:
        self.ready = [False] * len(self.params)
        self.pending = len(self.params)


def plan_buckets(
    sizes_bytes: list[int], dtypes: list[np.dtype], cap_bytes: int, first_cap_bytes: int
) -> list[list[int]]:
    """Group parameter indices into buckets, walking them in reverse registration order.

    A bucket closes when adding the next parameter would exceed its cap (the first bucket's cap
    is ``first_cap_bytes``, the others' ``cap_bytes``) or when the dtype changes. A parameter
    larger than the cap gets a bucket of its own. Returns lists of indices into the inputs.
    """
    if cap_bytes <= 0 or first_cap_bytes <= 0:
        raise ValueError(f"bucket caps must be positive, got {cap_bytes} and {first_cap_bytes} bytes")
    buckets: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for i in reversed(range(len(sizes_bytes))):
        cap = first_cap_bytes if not buckets else cap_bytes
        if current and (current_bytes + sizes_bytes[i] > cap or dtypes[i] != dtypes[current[0]]):
            buckets.append(current)
            current, current_bytes = [], 0
        current.append(i)
        current_bytes += sizes_bytes[i]
    if current:
        buckets.append(current)
    return buckets


def build_buckets(params: list[Parameter], cap_bytes: int, first_cap_bytes: int, extra_last: int = 0) -> list[Bucket]:
    """Allocate each bucket's flat buffer once; parameters' gradients become views into it.

    ``extra_last`` appends that many spare elements to the last bucket (the last to be sent),
    so a few statistics can ride along with the gradients instead of costing a message.
    """
    plan = plan_buckets([p.data.nbytes for p in params], [p.dtype for p in params], cap_bytes, first_cap_bytes)
    buckets = []
    for b, indices in enumerate(plan):
        members = [params[i] for i in indices]
        extra = extra_last if b == len(plan) - 1 else 0
        flat = np.zeros(sum(p.size for p in members) + extra, dtype=members[0].dtype)
        views, offset = [], 0
        for p in members:
            views.append(flat[offset : offset + p.size].reshape(p.shape))
            offset += p.size
        bucket = Bucket(b, members, flat, views)
        bucket.reset()
        buckets.append(bucket)
    return buckets
