"""Ring allreduce: a reduce-scatter around the ring, then an allgather around it.

The buffer is cut into p chunks. Rank r sends to its right neighbour (r+1) and receives from
its left neighbour (r-1), always at the same time, so every link is busy at every step.

Reduce-scatter, steps s = 0 .. p-2: rank r sends chunk (r - s) and receives chunk (r - s - 1),
which it adds to its own copy. After p-1 steps rank r holds chunk (r + 1) fully reduced.

Allgather, steps s = 0 .. p-2: rank r sends chunk (r - s + 1), the newest complete chunk it
has, and receives chunk (r - s), overwriting its copy. After p-1 steps every rank has all.

Cost for n bytes on p ranks (alpha = latency per message, beta = time per byte,
gamma = reduction time per byte): 2(p-1) alpha + 2(p-1)/p n beta + (p-1)/p n gamma.
Each rank sends 2(p-1)/p n bytes, which is optimal, so the ring wins for large messages;
its 2(p-1) latency terms make it lose for small ones.

Every chunk is reduced in the same order (around the ring) and then copied, so all ranks end
with bitwise identical results.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from collectives.algorithms.chunking import chunk_bounds
from collectives.algorithms.spec import Cost
from collectives.ops import ReduceOp
from collectives.transport import Step, Transport


def ring_allreduce(t: Transport, buf: np.ndarray, op: ReduceOp) -> Iterator[Step]:
    p, r = t.size, t.rank
    if p == 1:
        return
    bounds = chunk_bounds(buf.size, p)

    def chunk(i: int) -> np.ndarray:
        i %= p
        return buf[bounds[i] : bounds[i + 1]]

    right, left = (r + 1) % p, (r - 1) % p
    incoming = t.scratch(bounds[1] - bounds[0], buf.dtype)  # chunk 0 is the largest

    for s in range(p - 1):  # reduce-scatter
        into = chunk(r - s - 1)
        yield t.sendrecv(chunk(r - s), right, incoming[: into.size], left, tag=s)
        t.reduce(op, into, incoming[: into.size])

    for s in range(p - 1):  # allgather
        yield t.sendrecv(chunk(r - s + 1), right, chunk(r - s), left, tag=p + s)


def ring_cost(p: int, nbytes: int) -> Cost:
    """2(p-1) alpha + 2(p-1)/p n beta + (p-1)/p n gamma."""
    if p == 1:
        return Cost(0, 0, 0, 0, 0)
    share = (p - 1) / p * nbytes
    return Cost(
        latency_terms=2 * (p - 1),
        transfer_bytes=2 * share,
        reduce_bytes=share,
        messages_per_rank=2 * (p - 1),
        bytes_sent_per_rank=2 * share,
    )
