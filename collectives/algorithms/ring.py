"""Ring allreduce: a reduce-scatter around the ring, then an allgather around it.

The buffer is cut into p chunks. Rank r sends to its right neighbour (r+1) and receives from
its left neighbour (r-1), always at the same time, so every link is busy at every step.

One walk serves both halves: at step s (0 <= s < 2(p-1)) rank r sends chunk (r - s - 1) and
receives chunk (r - s - 2). In the reduce-scatter steps (s < p-1) it adds the incoming chunk to
its own copy; after them rank r holds chunk r fully reduced. In the allgather steps it stores
the incoming chunk, which is complete, in place of its own. The public building blocks are the
two halves of the same walk: ``ring_reduce_scatter`` (leaves chunk r on rank r) and
``ring_allgather`` (starts from chunk r on rank r).

Segmentation (NCCL's chunking): each chunk travels as messages of at most ``segment_bytes``, and
a segment is forwarded to the right as soon as it has been reduced, so the next step's send of
segment k overlaps this step's reduction of segment k+1, and a segment is reduced while it is
still in cache. Both sides cut chunks the same way (``chunking.segments``).

Cost for n bytes on p ranks, chunk c = ceil(n/p) (alpha = latency per message, beta = time per
byte, gamma = reduction time per byte): 2(p-1) alpha + 2(p-1) c beta + (p-1) c gamma.
Each rank sends about 2(p-1)/p n bytes, which is optimal, so the ring wins for large messages;
its 2(p-1) latency terms make it lose for small ones. With m segments per chunk a rank sends
2(p-1) m messages, one after the other, so each pays alpha; in a reduce-scatter step the
reduction of a segment overlaps the transfer of the next, so the step takes
alpha + s beta + s gamma + (m - 1) max(alpha + s beta, s gamma) (``ring_cost`` has the exact form).

Every chunk is reduced in the same order (around the ring) and then copied, so all ranks end
with bitwise identical results.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from collectives.algorithms.chunking import bounds_of, segment_count, segment_elements, segments
from collectives.algorithms.spec import ZERO_COST, Cost
from collectives.ops import ReduceOp
from collectives.transport import Step, Transport

SEGMENT_BYTES = 512 * 1024


def ring_walk(
    t: Transport, buf: np.ndarray, op: ReduceOp | None, first: int, last: int, segment_bytes: int
) -> Iterator[Step]:
    """Steps ``first`` .. ``last - 1`` of the ring walk (reduce-scatter is 0 .. p-2, allgather p-1 .. 2p-3)."""
    p, r = t.size, t.rank
    bounds = bounds_of(buf.size, p)
    seg = segment_elements(segment_bytes, buf.dtype.itemsize)
    right, left = (r + 1) % p, (r - 1) % p
    reduce_steps = min(last, p - 1) - first
    scratch = t.scratch(bounds[1] - bounds[0] if reduce_steps > 0 else 0, buf.dtype)  # chunk 0 is the largest
    if bounds[1] - bounds[0] <= seg:
        # Every chunk is one message: a step is one exchange, the textbook figure. (The same
        # messages as the segmented walk below makes with one segment, in fewer calls.)
        for s in range(first, last):
            c, d = (r - s - 1) % p, (r - s - 2) % p  # the chunk sent, the chunk received
            a, b = bounds[d], bounds[d + 1]
            if s < p - 1:
                got = scratch[: b - a]
                yield t.sendrecv(buf[bounds[c] : bounds[c + 1]], right, got, left, s)
                t.reduce(op, buf[a:b], got)
            else:
                yield t.sendrecv(buf[bounds[c] : bounds[c + 1]], right, buf[a:b], left, s)
        return

    def pieces(step: int) -> list[tuple[int, int]]:
        c = (r - step - 1) % p  # the chunk sent at this step
        return segments(bounds[c], bounds[c + 1], seg)

    sending = [t.isend(buf[a:b], right, first) for a, b in pieces(first)]
    for s in range(first, last):
        reducing = s < p - 1
        incoming = pieces(s + 1)  # what we receive now is what we send next
        base = incoming[0][0]
        if reducing:
            recvs = [t.irecv(scratch[a - base : b - base], left, s) for a, b in incoming]
        else:
            recvs = [t.irecv(buf[a:b], left, s) for a, b in incoming]
        forwarded = []
        for (a, b), req in zip(incoming, recvs):
            yield t.wait(req)
            if reducing:
                t.reduce(op, buf[a:b], scratch[a - base : b - base])
            if s + 1 < last:
                forwarded.append(t.isend(buf[a:b], right, s + 1))
        yield t.wait(*sending)  # this step's sends: their chunk is overwritten p-1 steps later
        sending = forwarded


def ring_allreduce(t: Transport, buf: np.ndarray, op: ReduceOp, segment_bytes: int = SEGMENT_BYTES) -> Iterator[Step]:
    if t.size > 1:
        yield from ring_walk(t, buf, op, 0, 2 * (t.size - 1), segment_bytes)


def ring_reduce_scatter(
    t: Transport, buf: np.ndarray, op: ReduceOp, segment_bytes: int = SEGMENT_BYTES
) -> Iterator[Step]:
    """Leaves chunk r (``chunk_bounds(buf.size, p)``) of the reduction on rank r; the rest is scratch."""
    if t.size > 1:
        yield from ring_walk(t, buf, op, 0, t.size - 1, segment_bytes)


def ring_allgather(t: Transport, buf: np.ndarray, segment_bytes: int = SEGMENT_BYTES) -> Iterator[Step]:
    """Fills every chunk of ``buf`` from the rank that owns it (chunk r comes from rank r)."""
    if t.size > 1:
        yield from ring_walk(t, buf, None, t.size - 1, 2 * (t.size - 1), segment_bytes)


def _ring_counts(p: int, count: int, itemsize: int, segment_bytes: int) -> tuple[int, int]:
    """(messages, bytes) the busiest rank sends in a whole ring allreduce (p >= 2).

    Rank r sends every chunk but its own in the reduce-scatter and every chunk but chunk r+1 in
    the allgather: all chunks twice, less chunks r and r+1. The busiest rank is the one whose
    chunks r and r+1 are both small (the last ``p - n % p`` chunks are one element smaller).
    """
    seg = segment_elements(segment_bytes, itemsize)
    base, extra = divmod(count, p)
    big, small = base + 1, base
    if extra == 0:
        skipped = (small, small)
    elif p - extra >= 2:
        skipped = (small, small)
    else:  # only the last chunk is small: the best pair is (p-1, 0)
        skipped = (small, big)
    total_elems = 2 * count - sum(skipped)
    total_msgs = 2 * (extra * segment_count(big, seg) + (p - extra) * segment_count(small, seg))
    total_msgs -= sum(segment_count(s, seg) for s in skipped)
    return total_msgs, total_elems * itemsize


def pipelined_step(sizes: list[int], alpha: float, beta: float, gamma: float) -> float:
    """One reduce-scatter step of segments ``sizes`` (bytes): each is transferred after the
    previous one (the ports are busy) and reduced once it has arrived and the previous one has
    been reduced. Fill + (m - 1) x the slower of transfer and reduction, in closed form."""
    arrived = reduced = 0.0
    for s in sizes:
        arrived += alpha + s * beta
        reduced = max(reduced, arrived) + s * gamma
    return reduced


def ring_cost(p: int, nbytes: int, itemsize: int = 1, segment_bytes: int = SEGMENT_BYTES) -> Cost:
    """(p-1) [step with reduction] + (p-1) [m alpha + c beta], c = the largest chunk in m segments.

    A reduce-scatter step takes its m segments one after the other and reduces each as it
    arrives, so its reductions overlap the next transfers (see :func:`pipelined_step`); an
    allgather step only moves them. Unsegmented (m = 1) that is the textbook
    2(p-1) alpha + 2(p-1) c beta + (p-1) c gamma. The busiest rank sends 2(p-1) m messages.
    """
    if p == 1:
        return ZERO_COST
    count = nbytes // itemsize
    chunk = -(-count // p)
    sizes = [(b - a) * itemsize for a, b in segments(0, chunk, segment_elements(segment_bytes, itemsize))]
    c, m = chunk * itemsize, len(sizes)
    messages, sent = _ring_counts(p, count, itemsize, segment_bytes)

    def timing(alpha: float, beta: float, gamma: float) -> float:
        return (p - 1) * (pipelined_step(sizes, alpha, beta, gamma) + m * alpha + c * beta)

    return Cost(2 * (p - 1) * m, 2 * (p - 1) * c, (p - 1) * c, messages, sent, timing if m > 1 else None)
