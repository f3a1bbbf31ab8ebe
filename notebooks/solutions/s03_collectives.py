"""Reference solutions of notebook 03 (collectives), and the wrong answers the tests plant."""

from __future__ import annotations

from collections.abc import Iterator

from collectives import chunk_bounds
from collectives.ops import ReduceOp
from collectives.transport import Step, Transport


def ring_allreduce(t: Transport, buf, op: ReduceOp) -> Iterator[Step]:
    """The textbook ring: p-1 reduce-scatter steps, then p-1 allgather steps, one exchange each."""
    p, r = t.size, t.rank
    if p == 1:
        return
    bounds = chunk_bounds(buf.size, p)  # chunk c is buf[bounds[c]:bounds[c+1]]; chunk 0 is the largest
    right, left = (r + 1) % p, (r - 1) % p
    incoming = t.scratch(bounds[1] - bounds[0], buf.dtype)
    for s in range(2 * (p - 1)):
        c, d = (r - s - 1) % p, (r - s - 2) % p  # the chunk sent, the chunk received
        a, b = bounds[d], bounds[d + 1]
        if s < p - 1:  # reduce-scatter: add what arrives into our own copy of chunk d
            yield t.sendrecv(buf[bounds[c] : bounds[c + 1]], right, incoming[: b - a], left, tag=s)
            t.reduce(op, buf[a:b], incoming[: b - a])
        else:  # allgather: chunk d arrives complete; store it in place
            yield t.sendrecv(buf[bounds[c] : bounds[c + 1]], right, buf[a:b], left, tag=s)


def ring_time(p: int, nbytes: float, alpha: float, beta: float, gamma: float) -> float:
    """2(p-1) messages of n/p bytes, (p-1) reductions of n/p bytes."""
    return 2 * (p - 1) * alpha + 2 * (p - 1) * (nbytes / p) * beta + (p - 1) * (nbytes / p) * gamma
