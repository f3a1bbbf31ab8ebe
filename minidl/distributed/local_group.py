"""Virtual ranks in one process: run a communication hook as p ranks would, without MPI.

The batch-scaling study trains in one process (a global batch on one process is the same update
as p ranks with a share each), but a lossy hook breaks that equivalence: PowerSGD and top-k
compress each rank's *own* gradient and keep a residual per rank. :func:`reduce_with_hook` runs
the hook once per virtual rank, each in a thread of its own with its own state, over its own
gradients; their collectives meet in :class:`LocalGroup`, which hands every rank everyone's
array. The results are those of an allreduce or allgather (each rank reduces the same arrays in
rank order, so all ranks agree bitwise), not bit-for-bit those of the ring's order of additions.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from collectives.ops import get_op
from minidl.distributed.hooks import CommHook, GradBucket

EXCHANGE_TIMEOUT = 60.0  # seconds: a hook that makes a different number of calls on one rank fails, not hangs


class LocalGroup:
    """``size`` threads that exchange arrays: each deposits its own and gets everyone's, in rank order."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"LocalGroup: size must be at least 1, got {size}")
        self.size = size
        self._barrier = threading.Barrier(size, timeout=EXCHANGE_TIMEOUT)
        self._slots: list[np.ndarray | None] = [None] * size

    def exchange(self, rank: int, array: np.ndarray) -> list[np.ndarray]:
        """Everyone's ``array`` (copies, shared by all ranks: read them, do not write them)."""
        self._slots[rank] = array.copy()
        self._barrier.wait()
        everyone = list(self._slots)
        self._barrier.wait()  # all have read before anyone deposits for the next call
        return everyone  # type: ignore[return-value]

    def abort(self) -> None:
        """A rank failed: wake the others (they raise BrokenBarrierError) instead of leaving them waiting."""
        self._barrier.abort()


@dataclass
class _LocalComm:
    """What hooks ask of a communicator: its rank and size."""

    rank: int
    size: int

    def Get_rank(self) -> int:
        return self.rank

    def Get_size(self) -> int:
        return self.size


class LocalBucket(GradBucket):
    """A GradBucket whose collectives go through a :class:`LocalGroup` instead of MPI."""

    group: LocalGroup

    def all_reduce(self, array: np.ndarray, op: Any = "avg", *, check: bool | None = None) -> np.ndarray:
        reduce_op = get_op(op)
        arrays = self.group.exchange(self.comm.Get_rank(), array)
        total = arrays[0].copy()  # the arrays are shared by every rank's thread: reduce into a copy
        for other in arrays[1:]:
            reduce_op.reduce(total, other)
        reduce_op.finalize(total, self.group.size)
        array[...] = total
        return array

    def all_gather(self, array: np.ndarray) -> np.ndarray:
        return np.stack([a.reshape(-1) for a in self.group.exchange(self.comm.Get_rank(), array)])


def reduce_with_hook(
    hook: CommHook, states: Sequence[Any], buffers: Sequence[np.ndarray], shapes: Sequence[tuple[int, ...]], step: int
) -> tuple[np.ndarray, int]:
    """Run ``hook`` as ``len(buffers)`` ranks would on one bucket; returns (rank 0's result, its wire bytes).

    ``buffers[r]`` is rank r's flat gradient (parameters laid out as ``shapes``, in order) and
    ``states[r]`` its hook state. Every buffer is replaced by its result, as DDP's are.
    """
    p = len(buffers)
    group = LocalGroup(p)

    def run(r: int) -> int:
        views, offset = [], 0
        for shape in shapes:
            n = int(np.prod(shape))
            views.append(buffers[r][offset : offset + n].reshape(shape))
            offset += n
        bucket = LocalBucket(0, buffers[r], [], views, True, step, _LocalComm(r, p), "local", None, False)
        bucket.wire_bytes = buffers[r].nbytes
        bucket.group = group
        try:
            result = hook(states[r], bucket)
        except BaseException:
            group.abort()
            raise
        if result is not None and result is not buffers[r]:
            np.copyto(buffers[r], result)
        return int(bucket.wire_bytes)

    if p == 1:
        return buffers[0], run(0)
    with ThreadPoolExecutor(p, thread_name_prefix="virtual-rank") as pool:
        futures = [pool.submit(run, r) for r in range(p)]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:  # the rank that failed first, not the others its abort woke up
        raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
    return buffers[0], futures[0].result()
