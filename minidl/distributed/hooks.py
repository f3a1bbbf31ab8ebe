"""Communication hooks: what DDP does with a bucket of local gradients, swappable as in PyTorch.

A hook is a function ``hook(state, bucket) -> np.ndarray | None`` that DDP calls (on its
communication thread when overlapping) once per bucket per synchronised step, on every rank in
the same bucket order. It must leave the gradient to apply in ``bucket.buffer``: either reduce
``bucket.buffer`` in place and return ``None`` (or the buffer), or return an array of the same
shape that DDP copies in. The default, :func:`allreduce_hook`, averages the bucket with the
chosen hand-written allreduce; lossy hooks (compression) return an approximation of that average
and say how many bytes they put on the wire in ``bucket.wire_bytes`` (each rank's outgoing
payload of one call, as ``nbytes`` is for a plain allreduce), which is what the trainer reports
and what the planner times on a link.

Register with ``DistributedDataParallel.register_comm_hook(state, hook)`` before the first
backward, with the same hook on every rank (hooks exchange messages: a hook on one rank only
would leave the others waiting, until the watchdog names the rank).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from minidl.distributed import comm as dist
from minidl.nn.module import Parameter

if TYPE_CHECKING:
    from collectives import ReduceOp


@dataclass
class GradBucket:
    """One bucket of one step, as a hook sees it."""

    index: int  # 0 is the first bucket sent (the last layers' gradients)
    buffer: np.ndarray  # flat local gradients (summed over no_sync steps); the hook leaves the average here
    parameters: list[Parameter]
    views: list[np.ndarray]  # views[i] is parameters[i]'s gradient inside ``buffer``, shaped like it
    is_last: bool  # the last bucket of the step
    step: int  # synchronised steps completed before this one (0 on the first)
    comm: Any  # DDP's private communicator
    algorithm: str  # the allreduce algorithm DDP was given
    link: dist.Link | None  # the emulated link, if any
    check: bool  # whether this call should run the cross-rank agreement check
    wire_bytes: int = 0  # set by the hook: bytes this rank sent for the bucket (default: buffer.nbytes)
    extra: dict[str, float] = field(default_factory=dict)  # hook-specific figures for reports

    def all_reduce(self, array: np.ndarray, op: str | ReduceOp = "avg", *, check: bool | None = None) -> np.ndarray:
        """Reduce ``array`` in place across ranks with DDP's algorithm, communicator, link (op: name or ReduceOp)."""
        return dist.all_reduce(
            array, op, self.algorithm, self.comm, link=self.link, check=self.check if check is None else check
        )

    def all_gather(self, array: np.ndarray) -> np.ndarray:
        """Every rank's ``array`` (same size and dtype on all ranks), stacked: row r is rank r's.

        A ring allgather (``comm.all_gather``) on DDP's communicator. Neither it nor
        ``collectives.allgather`` takes ``link=`` yet, so on an emulated link the call is stretched
        here, as a whole, to the time the link emulation would give the ring's p - 1 steps of one
        row each (latency + row bytes / bandwidth per step).
        """
        p = self.comm.Get_size()
        flat = np.ascontiguousarray(array).reshape(-1)
        gathered = np.empty((p, flat.size), flat.dtype)
        gathered[self.comm.Get_rank()] = flat
        start = time.perf_counter()
        dist.all_gather(gathered, self.comm, check=self.check)
        if self.link is not None and p > 1:
            remaining = start + (p - 1) * self.link.message_time(flat.nbytes) - time.perf_counter()
            if remaining > 0:
                time.sleep(remaining)
        return gathered


CommHook = Callable[[Any, GradBucket], "np.ndarray | None"]


def allreduce_hook(state: Any, bucket: GradBucket) -> None:
    """The default: average the bucket across ranks with one allreduce (op "avg")."""
    bucket.all_reduce(bucket.buffer, "avg")
    bucket.wire_bytes = bucket.buffer.nbytes


def keep_if_finite(store: dict[Any, np.ndarray], key: Any, array: np.ndarray) -> None:
    """Keep a hook's state across steps (a residual, PowerSGD's Q), unless it holds NaN or Inf: then forget it.

    A non-finite gradient still reaches every rank through the step itself (so the trainer stops,
    or skips the step on every rank alike); kept in the hook's state it would also make every later
    step non-finite, and a run that skips bad steps would skip all the rest.
    """
    if np.isfinite(array).all():
        store[key] = array
    else:
        store.pop(key, None)
