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

    The first three fields count what lies on the critical path (the time formula);
    the last two are the busiest rank's totals (what the simulator's counters must match).
    """

    latency_terms: float  # alpha terms: messages in sequence on the critical path
    transfer_bytes: float  # beta terms: bytes transferred in sequence on the critical path
    reduce_bytes: float  # gamma terms: bytes reduced in sequence on the critical path
    messages_per_rank: int  # messages the busiest rank sends
    bytes_sent_per_rank: float  # bytes the busiest rank sends

    def time(self, alpha: float, beta: float, gamma: float = 0.0) -> float:
        """Predicted seconds for latency ``alpha`` (s), ``beta`` (s/byte), ``gamma`` (s/byte)."""
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
