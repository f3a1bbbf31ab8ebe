"""What one benchmark row runs: each contender's call, its exact-valued inputs and expected result.

A contender is "MPI" (MPI's own collective, straight into mpi4py) or an algorithm name of the
collective (for allreduce also "auto"). Each is bound to one call without arguments, so the
timing loop adds the same few tens of nanoseconds to every contender. The check runs the same
call on exact-valued inputs (small integers, exact in every dtype and order) and counts the
elements that differ from an independently computed result: nccl-tests' ``#wrong``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
from mpi4py import MPI

import collectives
from collectives.algorithms import ALGORITHMS, BLOCKS, algorithm_names
from collectives.algorithms.chunking import chunk_bounds
from collectives.ops import ReduceOp

COLLECTIVES = ("allreduce", "reduce_scatter", "allgather", "broadcast")
MPI_OPS = {"sum": MPI.SUM, "prod": MPI.PROD, "max": MPI.MAX, "min": MPI.MIN, "avg": MPI.SUM}
ROOT = 0


def busbw_factor(collective: str, p: int) -> float:
    """nccl-tests' bus bandwidth factor: busbw = algbw * factor, comparable across rank counts."""
    if p == 1:
        return 0.0 if collective != "broadcast" else 1.0
    return {"allreduce": 2 * (p - 1) / p, "reduce_scatter": (p - 1) / p, "allgather": (p - 1) / p}.get(collective, 1.0)


def names_for(collective: str) -> list[str]:
    """Every algorithm of ``collective`` (allreduce: "auto" first), in registration order."""
    return algorithm_names() if collective == "allreduce" else list(BLOCKS[collective])


def default_choice(collective: str) -> str:
    """The pre-declared choice the summary compares with MPI: ``auto`` for allreduce, else the API's default."""
    return {"allreduce": "auto", "reduce_scatter": "ring", "allgather": "ring", "broadcast": "binomial"}[collective]


def runs_on(collective: str, name: str, p: int, count: int) -> bool:
    """Whether contender ``name`` may run on p ranks and ``count`` elements (its declared constraints)."""
    if name in ("MPI", "auto"):
        return True
    spec = ALGORITHMS[name] if collective == "allreduce" else BLOCKS[collective][name]
    return spec.constraints.violation(p, count) is None


def call_for(
    collective: str, contender: str, buf: np.ndarray, comm: MPI.Intracomm, op: ReduceOp
) -> Callable[[], object]:
    """One ``collective`` of ``buf`` (in place, as the library does) by ``contender``, as a call."""
    mpi = contender == "MPI"
    if collective == "allreduce":
        if mpi:
            return partial(comm.Allreduce, MPI.IN_PLACE, buf, MPI_OPS[op.name])
        return partial(collectives.allreduce, buf, comm, op, contender)
    if collective == "reduce_scatter":
        if mpi:  # MPI's in-place reduce-scatter: the same chunks ours leave on each rank
            counts = np.diff(chunk_bounds(buf.size, comm.Get_size())).tolist()
            return partial(comm.Reduce_scatter, MPI.IN_PLACE, buf, counts, MPI_OPS[op.name])
        return partial(collectives.reduce_scatter, buf, comm, op, contender)
    if collective == "allgather":
        if mpi:
            bounds = chunk_bounds(buf.size, comm.Get_size())
            counts = np.diff(bounds).tolist()
            return partial(comm.Allgatherv, MPI.IN_PLACE, [buf, (counts, bounds[:-1])])
        return partial(collectives.allgather, buf, comm, contender)
    if collective == "broadcast":
        if mpi:
            return partial(comm.Bcast, buf, ROOT)
        return partial(collectives.broadcast, buf, ROOT, comm, contender)
    raise ValueError(f"unknown collective {collective!r}; expected one of {COLLECTIVES}")


def exact_inputs(rank: int, n: int, dtype: np.dtype) -> np.ndarray:
    """Small integers, so every sum, product, max and min is exact in every dtype and order."""
    return ((np.arange(n) + rank) % 5).astype(dtype)


def count_wrong(collective: str, contender: str, count: int, dtype: np.dtype, comm: MPI.Intracomm, op: ReduceOp) -> int:
    """Elements of the result that differ from the expected one, summed over all ranks."""
    p, rank = comm.Get_size(), comm.Get_rank()
    bounds = chunk_bounds(count, p)
    lo, hi = bounds[rank], bounds[rank + 1]
    if collective == "broadcast":
        buf = exact_inputs(ROOT, count, dtype) if rank == ROOT else np.full(count, 7, dtype)
        expected = exact_inputs(ROOT, count, dtype)
    elif collective == "allgather":
        buf = np.full(count, 7, dtype)  # 7 never occurs in exact_inputs: a missing chunk shows
        buf[lo:hi] = exact_inputs(rank, count, dtype)[lo:hi]
        expected = np.concatenate([exact_inputs(r, count, dtype)[bounds[r] : bounds[r + 1]] for r in range(p)])
    else:
        buf = exact_inputs(rank, count, dtype)
        expected = reference(op, p, count, dtype)
    call_for(collective, contender, buf, comm, op)()
    if collective == "reduce_scatter":  # only this rank's chunk is defined afterwards; MPI's in-place
        buf, expected = (buf[: hi - lo] if contender == "MPI" else buf[lo:hi]), expected[lo:hi]  # puts it first
    if contender == "MPI" and op.average and collective in ("allreduce", "reduce_scatter"):
        op.finalize(buf, p)
    return comm.allreduce(int(np.count_nonzero(buf != expected)))


def reference(op: ReduceOp, p: int, count: int, dtype: np.dtype) -> np.ndarray:
    """The reduction of every rank's exact inputs, computed in float64 by numpy, rank by rank."""
    acc = exact_inputs(0, count, np.float64)
    for r in range(1, p):
        x = exact_inputs(r, count, np.float64)
        if op.name in ("sum", "avg"):
            acc += x
        elif op.name == "prod":
            acc *= x
        elif op.name == "max":
            np.maximum(acc, x, out=acc)
        else:
            np.minimum(acc, x, out=acc)
    if op.average:
        return (acc.astype(dtype) / p).astype(dtype) if dtype.kind == "f" else acc.astype(dtype) // p
    return acc.astype(dtype)
