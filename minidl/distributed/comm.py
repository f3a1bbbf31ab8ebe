"""The process group, shaped like ``torch.distributed``: the one place minidl calls ``collectives``.

The trainer, the study and the benchmarks ask here for their rank and world size, reduce and
broadcast arrays, and list or parse the allreduce algorithms and links; they never import
``collectives`` themselves, so the two halves of the project meet in ``minidl.distributed`` only.
Every function takes an optional mpi4py communicator (default: the world) and works without
``mpiexec`` as a world of one rank.

Failure handling comes from ``collectives`` too: :func:`abort_on_error` makes an exception on
one rank end the whole job (printed once) instead of leaving the others waiting, and every
collective has a watchdog (:func:`set_timeout`; a rank that never arrives makes the others raise
:class:`CollectiveTimeoutError`, naming it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import collectives
from collectives import CollectiveTimeoutError, Link, abort_on_error, parse_link, set_timeout
from collectives.algorithms import resolve
from collectives.algorithms.chunking import chunk_bounds

__all__ = [
    "CollectiveTimeoutError",
    "Link",
    "abort_on_error",
    "algorithms",
    "all_gather",
    "all_reduce",
    "barrier",
    "broadcast",
    "check_algorithm",
    "get_rank",
    "get_world_size",
    "parse_link",
    "poll_waits",
    "reduce_scatter",
    "resolve_link",
    "set_timeout",
    "shard_bounds",
    "world",
]


def world() -> Any:
    """``MPI.COMM_WORLD``; without mpiexec it has one rank."""
    from mpi4py import MPI

    return MPI.COMM_WORLD


def get_rank(comm: Any = None) -> int:
    """This process's rank in ``comm`` (default: the world)."""
    return (comm or world()).Get_rank()


def get_world_size(comm: Any = None) -> int:
    """The number of ranks in ``comm`` (default: the world)."""
    return (comm or world()).Get_size()


def barrier(comm: Any = None) -> None:
    """Wait until every rank of ``comm`` has arrived."""
    (comm or world()).Barrier()


def all_reduce(
    array: np.ndarray,
    op: str = "sum",
    algorithm: str = "ring",
    comm: Any = None,
    *,
    link: Link | str | None = None,
    check: bool | None = None,
    ranks_per_node: int | str | None = None,
) -> np.ndarray:
    """Reduce ``array`` elementwise across ranks, in place, with a hand-written allreduce; returns it.

    ``op`` is "sum", "avg", "prod", "max" or "min"; ``algorithm`` one of :func:`algorithms`;
    ``link`` emulates a slower interconnect (a :class:`Link`, a preset name or "10Gbps,20us");
    ``check`` overrides the cross-rank agreement check for this call. ``ranks_per_node`` (an int,
    or "host" for the hosts MPI reports) makes it hierarchical: reduce in each node, ``algorithm``
    among the node leaders, broadcast in each node; ``link`` then applies between nodes only.
    """
    if ranks_per_node is not None:
        from collectives.hierarchical import hierarchical_allreduce

        grouping = None if ranks_per_node == "host" else ranks_per_node
        return hierarchical_allreduce(
            array, comm or world(), op, algorithm, ranks_per_node=grouping, link=resolve_link(link), check=check
        )
    return collectives.allreduce(array, comm or world(), op, algorithm, check=check, link=resolve_link(link))


SPIN = 50e-6  # seconds a poll_waits wait tests back to back before its first sleep: a small message's latency


def poll_waits(comm: Any, interval: float = 50e-6) -> None:
    """Make the blocking collectives on ``comm`` wait by testing every ``interval`` seconds and sleeping in
    between, instead of spinning inside MPI (``collectives.mpi_transport``, ``nap_bytes=0``).

    For a communicator whose waits happen beside computation on the same cores (DDP's comm thread,
    or ranks that outnumber the free cores): a spinning wait takes the core from the work it waits
    for. Call it before the first collective on ``comm`` that has a ``link``.
    """
    from collectives.context import context
    from collectives.mpi_transport import MPITransport

    ctx = context(comm)
    ctx.transport = MPITransport(ctx.comm, nap_bytes=0, nap_seconds=interval, spin=SPIN)


def broadcast(array: np.ndarray, src: int = 0, comm: Any = None, *, check: bool | None = None) -> np.ndarray:
    """Copy rank ``src``'s ``array`` into ``array`` on every rank, in place; returns it."""
    return collectives.broadcast(array, src, comm or world(), check=check)


def reduce_scatter(
    array: np.ndarray, op: str = "sum", comm: Any = None, *, algorithm: str = "ring", check: bool | None = None
) -> np.ndarray:
    """Reduce ``array`` across ranks, leaving chunk r (:func:`shard_bounds`) reduced on rank r; returns that chunk.

    Like ``torch.distributed.reduce_scatter_tensor`` on a flat buffer, in place: the returned
    chunk is a view into ``array``, whose other elements are left as workspace (not the result).
    ``algorithm`` is "ring" (any rank count) or "halving" (a power of two).
    """
    return collectives.reduce_scatter(array, comm or world(), op, algorithm, check=check)


def all_gather(
    array: np.ndarray, comm: Any = None, *, algorithm: str = "ring", check: bool | None = None
) -> np.ndarray:
    """Fill chunk i (:func:`shard_bounds`) of ``array`` on every rank from rank i's chunk i, in place; returns it.

    Like ``torch.distributed.all_gather_into_tensor`` on a flat buffer. ``algorithm`` is "ring"
    (any rank count) or "doubling" (a power of two).
    """
    return collectives.allgather(array, comm or world(), algorithm, check=check)


def shard_bounds(n: int, p: int) -> list[int]:
    """The chunks of ``reduce_scatter`` and ``all_gather``: chunk i is ``[b[i], b[i+1])``, the first n % p longer."""
    return chunk_bounds(n, p)


def algorithms() -> list[str]:
    """The allreduce algorithm names ``all_reduce`` and DDP accept ("auto" lets a cost model choose)."""
    return collectives.algorithm_names()


def check_algorithm(name: str) -> str:
    """Return ``name`` if it is an allreduce algorithm; else collectives' error, which lists the valid names."""
    return resolve(name)


def resolve_link(link: Link | str | None) -> Link | None:
    """A :class:`Link` from a Link, a preset name or "BANDWIDTH,LATENCY" (None stays None)."""
    return None if link is None else parse_link(link)
