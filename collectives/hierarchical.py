"""Hierarchical allreduce over MPI: a node communicator and a leaders' communicator, split once, and the
composed algorithm of :mod:`collectives.algorithms.hierarchical` run on their transports.

Nodes are the hosts MPI reports (``Split_type(COMM_TYPE_SHARED)``: ranks that share memory) or,
to study a cluster on one machine, blocks of ``ranks_per_node`` consecutive ranks (the last node
holds the rest when it does not divide p). Each node's lowest rank is its leader; the leaders get
a communicator of their own, so ``link=`` (the emulated interconnect) stretches only the messages
between nodes, as on a real cluster, while messages inside a node go at memory speed.

The split is collective and is made on first use for each grouping and kept with the
communicator's context. The call is checked like ``collectives.allreduce`` (same validation, same
agreement exchange under the watchdog), and with the checks on the ranks also agree on
``ranks_per_node`` (one more tiny allreduce).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from mpi4py import MPI

from collectives import agreement, select
from collectives.algorithms import ALGORITHMS
from collectives.algorithms.hierarchical import hierarchical_allreduce as composed
from collectives.api import context
from collectives.context import CommContext
from collectives.emulation import EmulatedLinkTransport
from collectives.link import Link
from collectives.mpi_transport import MPITransport
from collectives.ops import ReduceOp
from collectives.prepare import prepare

__all__ = ["NodeGroups", "hierarchical_allreduce"]


class NodeGroups:
    """This rank's node communicator and, on a node's leader, the leaders' communicator (split from ``comm``)."""

    def __init__(self, comm: MPI.Intracomm, ranks_per_node: int | None) -> None:
        rank = comm.Get_rank()
        if ranks_per_node is None:
            self.node_comm = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
        else:
            self.node_comm = comm.Split(rank // ranks_per_node, rank)
        self.leader = self.node_comm.Get_rank() == 0
        split = comm.Split(0 if self.leader else MPI.UNDEFINED, rank)
        self.leaders_comm = split if self.leader else None
        count = np.array([split.Get_size() if self.leader else 0], np.int64)
        self.node_comm.Bcast(count, root=0)  # the non-leaders learn how many nodes there are
        self.nodes = int(count[0])
        self.node = MPITransport(self.node_comm)
        self._leaders = MPITransport(self.leaders_comm) if self.leader else None
        self._emulated: dict[Link, EmulatedLinkTransport] = {}

    def release_scratch(self) -> None:
        """A new collective: the scratch arenas of both transports are free again."""
        self.node.release_scratch()
        if self._leaders is not None:
            self._leaders.release_scratch()

    def leaders(self, link: Link | None) -> MPITransport | EmulatedLinkTransport | None:
        """The leaders' transport (None on other ranks), stretched to ``link`` if given (made once per link)."""
        if self._leaders is None or link is None:
            return self._leaders
        if link not in self._emulated:
            self._emulated[link] = EmulatedLinkTransport(self._leaders, link)
        return self._emulated[link]


_groups: weakref.WeakKeyDictionary[CommContext, dict[int | None, NodeGroups]] = weakref.WeakKeyDictionary()


def _check_ranks_per_node(ranks_per_node: Any) -> int | None:
    if ranks_per_node is None:
        return None
    if isinstance(ranks_per_node, bool) or not isinstance(ranks_per_node, (int, np.integer)) or ranks_per_node < 1:
        raise ValueError(
            f"hierarchical allreduce: ranks_per_node must be a positive integer or None (nodes from the host names), "
            f"got {ranks_per_node!r}"
        )
    return int(ranks_per_node)


def node_groups(ctx: CommContext, ranks_per_node: int | None, check: bool = True) -> NodeGroups:
    """The groups of ``ctx``'s communicator for this grouping, split (collectively) on first use.

    The ranks first agree on ``ranks_per_node`` (one tiny allreduce; always when the groups are
    made, and on every call when ``check``): ranks with different groupings would otherwise wait
    for each other's messages on different communicators for ever.
    """
    known = _groups.setdefault(ctx, {})
    if check or ranks_per_node not in known:
        mine = -1 if ranks_per_node is None else ranks_per_node
        span = np.array([mine, -mine], np.int64)
        ctx.comm.Allreduce(MPI.IN_PLACE, span, op=MPI.MAX)
        if span[0] != -span[1]:
            raise ValueError(
                f"hierarchical allreduce: ranks pass different ranks_per_node (from {-span[1]} to {span[0]}; "
                "-1 = from the host names); every rank must pass the same"
            )
    if ranks_per_node not in known:
        known[ranks_per_node] = NodeGroups(ctx.comm, ranks_per_node)
    return known[ranks_per_node]


def hierarchical_allreduce(
    buf: np.ndarray,
    comm: Any = None,
    op: str | ReduceOp = "sum",
    algorithm: str = "ring",
    *,
    ranks_per_node: int | None = None,
    link: Link | str | None = None,
    check: bool | None = None,
    timeout: float | None = None,
) -> np.ndarray:
    """Reduce ``buf`` across all ranks of ``comm`` in place, node by node; returns ``buf``.

    Inside each node a binomial reduce to the node's leader, then ``algorithm`` (any name of
    ``collectives.ALGORITHMS``; "auto" chooses for the number of nodes) among the leaders, then a
    binomial broadcast inside each node. ``ranks_per_node`` groups consecutive ranks into nodes
    (None: the hosts MPI reports); ``link`` emulates the interconnect between nodes only. The other
    arguments are ``collectives.allreduce``'s.
    """
    ctx = context(comm)
    try:
        grouping, error = _check_ranks_per_node(ranks_per_node), None
    except ValueError as e:
        grouping, error = None, e
    call, _ = prepare(
        "allreduce", ctx, buf, op, algorithm, 0, check, timeout, link=link, label="hierarchical allreduce", error=error
    )
    groups = node_groups(ctx, grouping, agreement.checks_enabled(check) and ctx.size > 1)
    flat, reduce_op = call.flat, call.op
    name = call.algorithm if algorithm != "auto" else select.choose(groups.nodes, flat.nbytes, flat.dtype.itemsize)
    spec = ALGORITHMS[name]
    if why := spec.constraints.violation(groups.nodes, flat.size):  # the same on every rank: all raise together
        raise ValueError(f"hierarchical allreduce: algorithm {name!r} among {groups.nodes} node leaders {why}")
    leaders = groups.leaders(call.link)
    groups.release_scratch()
    for step in composed(groups.node, leaders, flat, reduce_op, spec.run):
        step.wait()  # a no-op for plain MPI steps; an emulated step sleeps out the link's time
    reduce_op.finalize(flat, ctx.size)
    return buf
