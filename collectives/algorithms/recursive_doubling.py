"""Recursive doubling allreduce: lg p exchanges of the whole vector (best for small messages).

On a power of two, at step k rank v exchanges its whole buffer with rank v XOR 2^k and both
reduce what they receive into their own; after lg p steps every rank holds the full reduction.
Other rank counts fold the extra ranks in first (:mod:`collectives.algorithms.folding`).

Cost for n bytes, pof2 = the largest power of two <= p, f = 1 if p is not a power of two:
(lg pof2 + 2f) alpha + (lg pof2 + 2f) n beta + (lg pof2 + f) n gamma. Fewest latency terms of
all (one message per step, one step per doubling), but every step moves all n bytes.

Partners reduce the same two values in opposite argument order; IEEE addition, multiplication,
max and min are commutative bit for bit, so both hold identical results at every step.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from collectives.algorithms.folding import Pow2Group, fold_in, fold_messages, fold_out, largest_pow2
from collectives.algorithms.spec import ZERO_COST, Cost
from collectives.ops import ReduceOp
from collectives.transport import Step, Transport


@lru_cache(maxsize=4096)
def schedule(p: int, rank: int) -> tuple[Pow2Group | None, tuple[tuple[int, int], ...]]:
    """(the rank's group if it takes part in folding, else None; its exchanges as (tag, partner)).

    Worked out once per (p, rank): small messages are all per-call overhead.
    """
    group = Pow2Group(p, rank)
    folding = group if rank < 2 * group.rem else None
    if group.vrank < 0:
        return folding, ()
    steps = group.size.bit_length() - 1
    return folding, tuple((k, group.real(group.vrank ^ (1 << k))) for k in range(steps))


def recursive_doubling_allreduce(t: Transport, buf: np.ndarray, op: ReduceOp) -> Iterator[Step]:
    if t.size == 1:
        return
    folding, exchanges = schedule(t.size, t.rank)
    incoming = t.scratch(buf.size, buf.dtype)
    if folding:
        yield from fold_in(t, buf, op, folding, incoming)
    for tag, partner in exchanges:
        yield t.sendrecv(buf, partner, incoming, partner, tag)
        t.reduce(op, buf, incoming)
    if folding:
        yield from fold_out(t, buf, folding)


def recursive_doubling_cost(p: int, nbytes: int, itemsize: int = 1) -> Cost:
    """(lg pof2 + 2f) (alpha + n beta) + (lg pof2 + f) n gamma."""
    if p == 1:
        return ZERO_COST
    n = nbytes // itemsize * itemsize
    steps = largest_pow2(p).bit_length() - 1
    f = fold_messages(p)
    return Cost(steps + 2 * f, (steps + 2 * f) * n, (steps + f) * n, steps + f, (steps + f) * n)
