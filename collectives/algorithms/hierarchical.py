"""Hierarchical allreduce: reduce inside each node, allreduce among the node leaders, broadcast inside each node.

On a cluster the links inside a node (shared memory, NVLink) are much faster than the links
between nodes. A flat ring sends 2(p-1)/p n bytes per rank over whatever link joins it to its
neighbour, so the slow links carry traffic from every rank. Here only one rank per node (its
leader, the lowest rank) talks across nodes, and the inter-node phase is an allreduce among
``nodes`` ranks instead of p (Horovod's hierarchical allreduce, NCCL's tree across nodes):

1. binomial reduce of the whole buffer to the leader, inside each node (fast links);
2. allreduce of the buffer among the leaders with any registered algorithm (the slow links);
3. binomial broadcast from the leader, inside each node.

Cost, k = ranks per node, N = nodes, D = ceil(lg k), the inner algorithm's cost on N ranks:
D (alpha_intra + n beta_intra + n gamma) + inner(N, n) + D (alpha_intra + n beta_intra). The
inter-node part moves the inner algorithm's bytes once per node rather than once per rank.

One source of truth: the phases are the existing generators (``binomial_reduce``,
``binomial_broadcast``, the inner algorithm), each run on a *group transport*, a
:class:`collectives.transport.Transport` whose ranks are the members of the group. The composed
generator :func:`hierarchical_allreduce` takes the two group transports. Over MPI they are
transports on communicators made with ``Split`` (:mod:`collectives.hierarchical`); in the
simulator, and anywhere else one transport spans all ranks, :class:`GroupView` renumbers a
subset of its ranks (:func:`hierarchical`, which gives an ordinary ``run(t, buf, op)``).

No two phases send messages in the same direction between the same two ranks (the reduce sends
towards the leader, the broadcast away from it, and two leaders never share a node), so the
phases need no tags of their own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from collectives.algorithms.spec import Algorithm, AlgorithmSpec, Cost
from collectives.algorithms.tree import binomial_broadcast, binomial_reduce, tree_cost
from collectives.ops import ReduceOp
from collectives.transport import Step, Transport


@dataclass(frozen=True)
class NodeLayout:
    """Which node each rank sits on; a node's leader is its lowest rank."""

    node_of: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.node_of:
            raise ValueError("a node layout needs at least one rank")
        seen: list[int] = []
        for node in self.node_of:
            if node not in seen:
                seen.append(node)
        if seen != list(range(len(seen))):
            raise ValueError(f"node ids must be 0, 1, ... in order of their first rank, got {self.node_of}")

    @classmethod
    def blocks(cls, p: int, ranks_per_node: int) -> NodeLayout:
        """Ranks 0..k-1 on node 0, k..2k-1 on node 1, ...; if k does not divide p the last node holds p % k."""
        if not isinstance(ranks_per_node, (int, np.integer)) or isinstance(ranks_per_node, bool) or ranks_per_node < 1:
            raise ValueError(f"ranks_per_node must be a positive integer, got {ranks_per_node!r}")
        if p < 1:
            raise ValueError(f"a node layout needs at least one rank, got p={p}")
        return cls(tuple(r // ranks_per_node for r in range(p)))

    @classmethod
    def from_names(cls, names: Sequence[str]) -> NodeLayout:
        """Ranks that report the same host name share a node (as ``MPI.Get_processor_name`` gives them)."""
        index: dict[str, int] = {}
        return cls(tuple(index.setdefault(name, len(index)) for name in names))

    @property
    def p(self) -> int:
        return len(self.node_of)

    @property
    def nodes(self) -> int:
        return max(self.node_of) + 1

    def members(self, node: int) -> tuple[int, ...]:
        """The ranks of ``node``, in rank order (the first is its leader)."""
        return tuple(r for r, n in enumerate(self.node_of) if n == node)

    @property
    def leaders(self) -> tuple[int, ...]:
        """Each node's lowest rank, in node order."""
        return tuple(self.members(n)[0] for n in range(self.nodes))

    @property
    def largest_node(self) -> int:
        return max(len(self.members(n)) for n in range(self.nodes))


class GroupView(Transport):
    """The ranks ``members`` of ``parent`` as a transport of their own (rank i is ``members[i]``).

    Messages, waits, reductions and scratch space are the parent's; only rank numbers change, so
    any algorithm generator runs on a subset of ranks without knowing it.
    """

    def __init__(self, parent: Transport, members: Sequence[int]) -> None:
        members = tuple(members)
        if parent.rank not in members:
            raise ValueError(f"rank {parent.rank} is not a member of the group {members}")
        self.parent = parent
        self.members = members
        self.rank = members.index(parent.rank)
        self.size = len(members)

    def isend(self, buf: np.ndarray, dest: int, tag: int) -> Any:
        return self.parent.isend(buf, self.members[dest], tag)

    def irecv(self, buf: np.ndarray, source: int, tag: int) -> Any:
        return self.parent.irecv(buf, self.members[source], tag)

    def wait(self, *requests: Any) -> Step:
        return self.parent.wait(*requests)

    def sendrecv(self, sendbuf: np.ndarray, dest: int, recvbuf: np.ndarray, source: int, tag: int) -> Step:
        return self.parent.sendrecv(sendbuf, self.members[dest], recvbuf, self.members[source], tag)

    def send(self, buf: np.ndarray, dest: int, tag: int) -> Step:
        return self.parent.send(buf, self.members[dest], tag)

    def recv(self, buf: np.ndarray, source: int, tag: int) -> Step:
        return self.parent.recv(buf, self.members[source], tag)

    def reduce(self, op: ReduceOp, inout: np.ndarray, incoming: np.ndarray) -> None:
        self.parent.reduce(op, inout, incoming)

    def copy(self, dst: np.ndarray, src: np.ndarray) -> None:
        self.parent.copy(dst, src)

    def scratch(self, n: int, dtype: np.dtype) -> np.ndarray:
        return self.parent.scratch(n, dtype)


def hierarchical_allreduce(
    node: Transport, leaders: Transport | None, buf: np.ndarray, op: ReduceOp, inner: Algorithm
) -> Iterator[Step]:
    """The three phases on this rank's node group (leader = node rank 0) and, on leaders only, the leaders' group."""
    yield from binomial_reduce(node, buf, op, 0)
    if leaders is not None:
        yield from inner(leaders, buf, op)
    yield from binomial_broadcast(node, buf, 0)


def hierarchical(inner: AlgorithmSpec, layout: NodeLayout) -> AlgorithmSpec:
    """The hierarchical allreduce on ``layout`` as an ordinary algorithm ``run(t, buf, op)`` over one transport.

    For the simulator (``collectives.sim.simulate``, ``check_real``, ``check_symbolic``): the node
    and leader groups are :class:`GroupView` s of ``t``. Its cost is the closed form on one
    uniform link; the two-level prediction is the simulator's, on its nodes x accelerators topology.
    """
    leaders = layout.leaders

    def run(t: Transport, buf: np.ndarray, op: ReduceOp) -> Iterator[Step]:
        if t.size != layout.p:
            raise ValueError(f"hierarchical allreduce: the layout has {layout.p} ranks, the transport {t.size}")
        node = GroupView(t, layout.members(layout.node_of[t.rank]))
        group = GroupView(t, leaders) if t.rank in leaders else None
        return hierarchical_allreduce(node, group, buf, op, inner.run)

    def cost(p: int, nbytes: int, itemsize: int = 1) -> Cost:
        return hierarchical_cost(inner, layout, nbytes, itemsize)

    name = f"hierarchical:{inner.name}"
    summary = f"reduce in each of {layout.nodes} node(s), {inner.name} among the leaders, broadcast in each node"
    return AlgorithmSpec(name, run, cost, summary, inner.constraints)


def hierarchical_cost(inner: AlgorithmSpec, layout: NodeLayout, nbytes: int, itemsize: int = 1) -> Cost:
    """Binomial reduce and broadcast on the largest node (together a tree allreduce's cost), plus the inner
    algorithm on the leaders, all on one uniform link. The busiest rank is a leader: it sends in all phases."""
    local, across = tree_cost(layout.largest_node, nbytes, itemsize), inner.cost(layout.nodes, nbytes, itemsize)
    return Cost(
        local.latency_terms + across.latency_terms,
        local.transfer_bytes + across.transfer_bytes,
        local.reduce_bytes + across.reduce_bytes,
        local.messages_per_rank + across.messages_per_rank,
        local.bytes_sent_per_rank + across.bytes_sent_per_rank,
        lambda alpha, beta, gamma: local.time(alpha, beta, gamma) + across.time(alpha, beta, gamma),
    )
