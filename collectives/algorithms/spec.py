"""What the registry knows about an algorithm: its code, its closed-form cost, its limits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

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


@dataclass(frozen=True)
class AlgorithmSpec:
    """A registered allreduce algorithm.

    ``run(t, buf, op)`` is the generator that does the work (see :mod:`collectives.transport`);
    ``cost(p, nbytes)`` its closed form; ``summary`` one line for listings and ``explain``.
    """

    name: str
    run: Algorithm
    cost: Callable[[int, int], Cost]
    summary: str
