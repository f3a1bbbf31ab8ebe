"""Naive allreduce: every rank sends to rank 0, which reduces and sends the result back.

The baseline every lecture starts from. Rank 0 receives the p-1 buffers one after the other
(in rank order), reducing each into its own, then sends the result to each rank in turn.
Cost for n bytes: 2(p-1) alpha + 2(p-1) n beta + (p-1) n gamma, all of it through rank 0:
linear in p in every term, which is what the other algorithms improve on.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from collectives.algorithms.spec import ZERO_COST, Cost
from collectives.ops import ReduceOp
from collectives.transport import Step, Transport


def naive_allreduce(t: Transport, buf: np.ndarray, op: ReduceOp) -> Iterator[Step]:
    p = t.size
    if p == 1:
        return
    if t.rank != 0:
        yield t.send(buf, 0, 0)
        yield t.recv(buf, 0, 1)
        return
    incoming = t.scratch(buf.size, buf.dtype)
    for source in range(1, p):
        yield t.recv(incoming, source, 0)
        t.reduce(op, buf, incoming)
    yield t.wait(*[t.isend(buf, dest, 1) for dest in range(1, p)])


def naive_cost(p: int, nbytes: int, itemsize: int = 1) -> Cost:
    """2(p-1) alpha + 2(p-1) n beta + (p-1) n gamma; rank 0 sends p-1 messages of n bytes."""
    if p == 1:
        return ZERO_COST
    n = nbytes // itemsize * itemsize
    return Cost(2 * (p - 1), 2 * (p - 1) * n, (p - 1) * n, p - 1, (p - 1) * n)
