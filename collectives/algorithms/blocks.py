"""The building blocks as collectives of their own: reduce-scatter, allgather, broadcast, reduce.

The allreduce algorithms are made of these phases; ``collectives.reduce_scatter`` and friends run
them alone. Each entry is a :class:`BlockSpec`: a factory ``make(t, buf, op, root)`` returning the
phase's generator, and where it may run. They are registered here, next to the algorithms, so
the API only looks names up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from collectives.algorithms.folding import Pow2Group
from collectives.algorithms.rabenseifner import doubling_allgather, halving_reduce_scatter, largest_half
from collectives.algorithms.ring import ring_allgather, ring_reduce_scatter
from collectives.algorithms.spec import Constraints
from collectives.algorithms.tree import SEGMENT_BYTES, binomial_broadcast, binomial_reduce
from collectives.ops import ReduceOp
from collectives.transport import Step, Transport

Factory = Callable[[Transport, np.ndarray, ReduceOp, int], Iterator[Step]]
POW2 = Constraints(power_of_two=True)


@dataclass(frozen=True)
class BlockSpec:
    """One way to run one building block: ``make(t, flat buffer, op, root)`` gives its generator."""

    name: str
    make: Factory
    summary: str
    constraints: Constraints = field(default_factory=Constraints)


def _halving(t: Transport, b: np.ndarray, op: ReduceOp, root: int) -> Iterator[Step]:
    group = Pow2Group(t.size, t.rank)
    return halving_reduce_scatter(t, b, op, group, t.scratch(largest_half(b.size, t.size), b.dtype))


BLOCKS: dict[str, dict[str, BlockSpec]] = {
    "reduce_scatter": {
        "ring": BlockSpec("ring", lambda t, b, op, root: ring_reduce_scatter(t, b, op), "p-1 steps around a ring"),
        "halving": BlockSpec("halving", _halving, "recursive halving, lg p steps", POW2),
    },
    "allgather": {
        "ring": BlockSpec("ring", lambda t, b, op, root: ring_allgather(t, b), "p-1 steps around a ring"),
        "doubling": BlockSpec(
            "doubling",
            lambda t, b, op, root: doubling_allgather(t, b, Pow2Group(t.size, t.rank)),
            "recursive doubling, lg p steps",
            POW2,
        ),
    },
    "broadcast": {
        "binomial": BlockSpec("binomial", lambda t, b, op, root: binomial_broadcast(t, b, root), "binomial tree"),
        "pipelined": BlockSpec(
            "pipelined",
            lambda t, b, op, root: binomial_broadcast(t, b, root, SEGMENT_BYTES),
            "binomial tree, in segments",
        ),
    },
    "reduce": {
        "binomial": BlockSpec("binomial", lambda t, b, op, root: binomial_reduce(t, b, op, root), "binomial tree"),
        "pipelined": BlockSpec(
            "pipelined",
            lambda t, b, op, root: binomial_reduce(t, b, op, root, SEGMENT_BYTES),
            "binomial tree, in segments",
        ),
    },
}
