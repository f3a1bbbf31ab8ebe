"""Rabenseifner's allreduce: recursive-halving reduce-scatter, then recursive-doubling allgather.

On a power of two p, the buffer is cut into p chunks (``chunk_bounds``). Reduce-scatter: at the
step with distance d = p/2, p/4, ..., 1 rank v exchanges with v XOR d; each keeps the half of
its current window of chunks that contains chunk v, sends the other half and reduces the half
it receives into the one it keeps. After lg p steps rank v holds chunk v fully reduced.
Allgather: the same exchanges in reverse order (d = 1, 2, ..., p/2), each rank sending every
complete chunk it has and receiving its partner's, straight into place. Other rank counts fold
the extra ranks in first (:mod:`collectives.algorithms.folding`).

Cost for n bytes on pof2 = the largest power of two <= p ranks (f = 1 if p is not a power of
two): (2 lg pof2 + 2f) alpha + (2 (pof2-1)/pof2 + 2f) n beta + ((pof2-1)/pof2 + f) n gamma.
Bandwidth-optimal like the ring, with the latency of recursive doubling times two: the usual
choice for medium messages.

Each chunk is reduced by exactly one rank and then copied, so all ranks hold identical bits.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from collectives.algorithms.chunking import bounds_of
from collectives.algorithms.folding import Pow2Group, fold_in, fold_messages, fold_out, largest_pow2, pow2_group
from collectives.algorithms.spec import ZERO_COST, Cost
from collectives.ops import ReduceOp
from collectives.transport import Step, Transport


def halving_reduce_scatter(
    t: Transport, buf: np.ndarray, op: ReduceOp, group: Pow2Group, scratch: np.ndarray
) -> Iterator[Step]:
    """Recursive halving: leaves chunk v of ``chunk_bounds(n, group.size)`` reduced on virtual rank v."""
    q, v = group.size, group.vrank
    bounds = bounds_of(buf.size, q)
    lo, d, step = 0, q // 2, 0
    while d >= 1:
        partner = group.real(v ^ d)
        if v & d:  # keep the upper half of the window [lo, lo + 2d)
            keep, send = (lo + d, lo + 2 * d), (lo, lo + d)
        else:
            keep, send = (lo, lo + d), (lo + d, lo + 2 * d)
        kept = buf[bounds[keep[0]] : bounds[keep[1]]]
        incoming = scratch[: kept.size]
        yield t.sendrecv(buf[bounds[send[0]] : bounds[send[1]]], partner, incoming, partner, tag=step)
        t.reduce(op, kept, incoming)
        lo, d, step = keep[0], d // 2, step + 1


def doubling_allgather(t: Transport, buf: np.ndarray, group: Pow2Group, first_tag: int = 0) -> Iterator[Step]:
    """Recursive doubling: virtual rank v starts with chunk v and ends with all of them."""
    q, v = group.size, group.vrank
    bounds = bounds_of(buf.size, q)
    d, step = 1, first_tag
    while d < q:
        mine = v & ~(d - 1)  # the window of d chunks this rank has complete
        theirs = mine ^ d
        partner = group.real(v ^ d)
        yield t.sendrecv(
            buf[bounds[mine] : bounds[mine + d]], partner, buf[bounds[theirs] : bounds[theirs + d]], partner, tag=step
        )
        d, step = d * 2, step + 1


def largest_half(n: int, q: int) -> int:
    """Scratch for recursive halving: the largest half it ever receives (the first, lower one)."""
    return bounds_of(n, q)[q // 2] if q > 1 else 0


def rabenseifner_allreduce(t: Transport, buf: np.ndarray, op: ReduceOp) -> Iterator[Step]:
    p, r = t.size, t.rank
    if p == 1:
        return
    group = pow2_group(p, r)
    folds = r < 2 * group.rem
    scratch = t.scratch(max(largest_half(buf.size, group.size), buf.size if folds else 0), buf.dtype)
    if folds:
        yield from fold_in(t, buf, op, group, scratch)
    if group.vrank >= 0:
        yield from halving_reduce_scatter(t, buf, op, group, scratch)
        yield from doubling_allgather(t, buf, group, first_tag=group.size.bit_length())
    if folds:
        yield from fold_out(t, buf, group)


def _sent_elements(q: int, v: int, n: int) -> int:
    """Elements virtual rank v sends in halving + doubling on q ranks."""
    b = bounds_of(n, q)
    total, lo, d = 0, 0, q // 2
    while d >= 1:
        send_lo = lo if v & d else lo + d
        total += b[send_lo + d] - b[send_lo]
        lo = lo + d if v & d else lo
        d //= 2
    d = 1
    while d < q:
        mine = v & ~(d - 1)
        total += b[mine + d] - b[mine]
        d *= 2
    return total


def rabenseifner_cost(p: int, nbytes: int, itemsize: int = 1) -> Cost:
    """(2 lg q + 2f) alpha + (2 (q-1)/q + 2f) n beta + ((q-1)/q + f) n gamma, q = pof2."""
    if p == 1:
        return ZERO_COST
    count = nbytes // itemsize
    n = count * itemsize
    q = largest_pow2(p)
    steps = q.bit_length() - 1
    f = fold_messages(p)
    c = -(-count // q) * itemsize  # the largest chunk
    share = (q - 1) * c
    if count % q == 0 or q > 4096:
        sent = 2 * share + f * n
    else:  # uneven chunks: find the busiest rank exactly (an odd fold partner also sends n back)
        rem = p - q
        sent = max(_sent_elements(q, v, count) * itemsize + (n if v < rem else 0) for v in range(q))
    return Cost(2 * steps + 2 * f, 2 * share + 2 * f * n, share + f * n, 2 * steps + f, sent)
