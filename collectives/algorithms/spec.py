"""What the registry knows about an algorithm: its code, its closed-form cost, its limits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from collectives.ops import ReduceOp
from collectives.transport import Step, Transport

Algorithm = Callable[[Transport, np.ndarray, ReduceOp], Iterator[Step]]


@dataclass(frozen=True)
class Cost:
    """Closed-form alpha-beta-gamma cost of one allreduce of n bytes on p ranks.

    The model is the textbook one (Thakur, Rabenseifner and Gropp 2005; the simulator's
    ``CostModel.textbook``): a message of m bytes takes alpha + m beta and holds one send port
    of the sender and one receive port of the receiver, from the moment both sides have posted
    it; reducing m bytes takes m gamma of the reducing rank's time.

    The first three fields are the critical path with one unit cost at a time: the alpha terms
    (every message on it, each segment of a segmented step included), the bytes transferred
    and the bytes reduced on it, which is what ``collectives.sim.critical_terms`` measures.
    :meth:`time` adds them up, which is exact when nothing on the critical path overlaps. A
    pipelined algorithm, whose reduction of one segment overlaps the transfer of the next,
    supplies ``timing``: its exact closed form, with the max() terms a pipeline has.
    The last two fields are the busiest rank's totals (what the simulator's counters must match).
    """

    latency_terms: float  # alpha terms: messages in sequence on the critical path
    transfer_bytes: float  # beta terms: bytes transferred in sequence on the critical path
    reduce_bytes: float  # gamma terms: bytes reduced in sequence on the critical path
    messages_per_rank: int  # messages the busiest rank sends
    bytes_sent_per_rank: float  # bytes the busiest rank sends
    timing: Callable[[float, float, float], float] | None = field(default=None, compare=False, repr=False)

    def time(self, alpha: float, beta: float, gamma: float = 0.0) -> float:
        """Predicted seconds for latency ``alpha`` (s), ``beta`` (s/byte), ``gamma`` (s/byte)."""
        if self.timing is not None:
            return self.timing(alpha, beta, gamma)
        return self.latency_terms * alpha + self.transfer_bytes * beta + self.reduce_bytes * gamma


ZERO_COST = Cost(0, 0, 0, 0, 0)


@dataclass(frozen=True)
class Constraints:
    """When an algorithm may run, as data (MPICH's ``coll_selection`` restrictions).

    The algorithms shipped here run everywhere; a user's algorithm may declare limits, and
    ``collectives.allreduce`` and the selector honour them with an error or by skipping it.
    """

    power_of_two: bool = False  # only for p a power of two
    min_count_per_rank: int = 0  # needs at least this many elements per rank (count >= k*p)

    def violation(self, p: int, count: int) -> str | None:
        """Why the algorithm cannot run on p ranks and ``count`` elements, or None."""
        if self.power_of_two and p & (p - 1):
            return f"needs a power-of-two number of ranks, got {p}"
        if count < self.min_count_per_rank * p:
            return f"needs at least {self.min_count_per_rank} element(s) per rank, got {count} on {p} ranks"
        return None


@dataclass(frozen=True)
class AlgorithmSpec:
    """A registered allreduce algorithm.

    ``run(t, buf, op)`` is the generator that does the work (see :mod:`collectives.transport`);
    ``cost(p, nbytes, itemsize=1)`` its closed form (``itemsize`` lets it count the exact
    chunking of ``nbytes // itemsize`` elements); ``summary`` one line for listings and
    ``explain``; ``constraints`` where it may run.
    """

    name: str
    run: Algorithm
    cost: Callable[..., Cost]
    summary: str
    constraints: Constraints = field(default_factory=Constraints)
