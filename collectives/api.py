"""The public entry points on numpy arrays over an mpi4py communicator.

Every function works in place on a contiguous numpy array of any shape (treated as flat), runs
one of the hand-written algorithms over a private duplicate of ``comm`` and returns the array.
Before running, the ranks check that they all make the same call (:mod:`collectives.prepare`);
an invalid argument on one rank raises on every rank, and a rank that never arrives makes the
others raise :class:`collectives.CollectiveTimeoutError` after ``timeout`` seconds
(:mod:`collectives.watchdog`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from collectives import agreement, algorithms, select, watchdog
from collectives.algorithms.chunking import chunk_bounds
from collectives.link import Link
from collectives.ops import ReduceOp
from collectives.plans import current, make_plan
from collectives.prepare import prepare

if TYPE_CHECKING:
    from collectives.context import CommContext

__all__ = ["allgather", "allreduce", "broadcast", "explain", "reduce", "reduce_scatter"]

_context: Callable[[Any], CommContext] | None = None
drain = deque(maxlen=0).extend  # runs a blocking transport's steps to the end, in C


def context(comm: Any) -> CommContext:
    """The communicator's context; mpi4py is imported on first use, so ``import collectives`` stays MPI-free."""
    global _context
    if _context is None:
        from collectives.context import context as real

        _context = real
    return _context(comm)


def allreduce(
    buf: np.ndarray,
    comm: Any = None,
    op: str | ReduceOp = "sum",
    algorithm: str = "ring",
    *,
    check: bool | None = None,
    link: Link | str | None = None,
    timeout: float | None = None,
) -> np.ndarray:
    """Reduce ``buf`` elementwise across all ranks of ``comm``, in place; returns ``buf``.

    ``comm`` defaults to ``MPI.COMM_WORLD``; ``op`` is one of "sum", "prod", "max", "min", "avg";
    ``algorithm`` names one of ``collectives.ALGORITHMS`` or is "auto" (see ``explain``);
    ``check`` overrides the cross-rank mismatch check for this call; ``link`` (a
    :class:`collectives.Link`, a preset name or "10Gbps,20us") stretches every step to that
    link's modelled time (the emulated transport is made once per communicator and link);
    ``timeout`` (seconds, default ``COLLECTIVES_TIMEOUT`` or 300, 0 = none) raises
    :class:`collectives.CollectiveTimeoutError` naming the missing ranks when not every rank arrives.
    """
    # The hot path: a call seen before on this communicator runs from its cached plan
    # (collectives.plans); everything else, including every error, takes _allreduce_full.
    ctx = _last_ctx if comm is _last_comm else _remember(comm)
    if buf.__class__ is np.ndarray and link is None:
        flags = buf.flags
        if flags.writeable and flags.forc:  # C- or Fortran-contiguous: ravel("K") is a view
            plans = ctx.plans
            if plans.registry != algorithms.version or plans.model != select.model_version:
                current(plans)  # the registry or the selection model changed: forget the old plans
            try:
                plan = plans[algorithm, op, buf.dtype, buf.size]
                limit = watchdog.default if timeout is None else watchdog.seconds(timeout)
            except (KeyError, TypeError, ValueError):  # a new call, an unhashable or a bad argument: the full path
                plan = None
            if plan is not None:
                run, reduce_op, average, exchange = plan
                ctx.calls += 1
                flat = buf if buf.ndim == 1 else buf.ravel("K")
                checked = exchange is not None and (agreement.enabled if check is None else check)
                if not (checked and exchange(flat, ctx, limit)):  # True: the check carried out the allreduce
                    t = ctx.transport
                    t.used = 0  # what t.run does, without its frame: every step is complete when yielded
                    drain(run(t, flat, reduce_op))
                if average:
                    reduce_op.finalize(flat, ctx.size)
                return buf
    return _allreduce_full(buf, ctx, op, algorithm, check, link, timeout)


_last_comm: Any = object()  # the communicator of the latest call, as passed (None included) ...
_last_ctx: Any = None  # ... and its context: consecutive calls on one communicator skip the lookup


def _remember(comm: Any) -> CommContext:
    global _last_comm, _last_ctx
    ctx = context(comm)
    _last_comm, _last_ctx = comm, ctx
    return ctx


def _allreduce_full(
    buf: Any, ctx: CommContext, op: Any, algorithm: Any, check: bool | None, link: Any, timeout: Any
) -> np.ndarray:
    """Validate and agree, run, and remember the call as a plan when it may take the hot path next time."""
    call = prepare("allreduce", ctx, buf, op, algorithm, 0, check, timeout, link=link, fuse=True)[0]
    if link is None and buf.__class__ is np.ndarray:
        current(ctx.plans)[algorithm, op, buf.dtype, buf.size] = make_plan(ctx, call, op, algorithm)
    if not call.done:
        t = ctx.transport if call.link is None else ctx.emulated(call.link)
        t.run(call.run(t, call.flat, call.op))
    call.op.finalize(call.flat, ctx.size)
    return buf


def _block(collective: str, buf: Any, comm: Any, op: Any, algorithm: str, root: int, check: Any, timeout: Any):
    """Run a building block (``collectives.algorithms.BLOCKS``) after the shared prepare-and-agree step."""
    ctx = context(comm)
    call = prepare(collective, ctx, buf, op, algorithm, root, check, timeout)[0]
    t = ctx.transport
    t.run(call.run(t, call.flat, call.op, root))
    return ctx, call.flat, call.op


def reduce_scatter(
    buf: np.ndarray,
    comm: Any = None,
    op: str | ReduceOp = "sum",
    algorithm: str = "ring",
    *,
    check: bool | None = None,
    timeout: float | None = None,
) -> np.ndarray:
    """Reduce ``buf`` across ranks and leave chunk r of the result on rank r; returns that chunk (a view).

    Chunks follow ``collectives.chunk_bounds(buf.size, p)`` (the first ``size % p`` chunks have
    one extra element). The rest of ``buf`` is used as workspace. Algorithms: "ring" (any p),
    "halving" (recursive halving, p a power of two).
    """
    ctx, flat, reduce_op = _block("reduce_scatter", buf, comm, op, algorithm, 0, check, timeout)
    b = chunk_bounds(flat.size, ctx.size)
    mine = flat[b[ctx.rank] : b[ctx.rank + 1]]
    reduce_op.finalize(mine, ctx.size)
    return mine


def allgather(
    buf: np.ndarray,
    comm: Any = None,
    algorithm: str = "ring",
    *,
    check: bool | None = None,
    timeout: float | None = None,
) -> np.ndarray:
    """Fill chunk i of ``buf`` (``chunk_bounds(buf.size, p)``) on every rank from rank i's chunk i; returns ``buf``.

    Algorithms: "ring" (any p), "doubling" (recursive doubling, p a power of two).
    """
    _block("allgather", buf, comm, None, algorithm, 0, check, timeout)
    return buf


def broadcast(
    buf: np.ndarray,
    root: int = 0,
    comm: Any = None,
    algorithm: str = "binomial",
    *,
    check: bool | None = None,
    timeout: float | None = None,
) -> np.ndarray:
    """Copy ``root``'s ``buf`` into ``buf`` on every rank; returns ``buf``.

    Algorithms: "binomial" (binomial tree), "pipelined" (the same tree in segments, for large buffers).
    """
    _block("broadcast", buf, comm, None, algorithm, root, check, timeout)
    return buf


def reduce(
    buf: np.ndarray,
    root: int = 0,
    comm: Any = None,
    op: str | ReduceOp = "sum",
    algorithm: str = "binomial",
    *,
    check: bool | None = None,
    timeout: float | None = None,
) -> np.ndarray:
    """Reduce ``buf`` across ranks into ``buf`` on ``root``; other ranks' ``buf`` is left unchanged.

    Algorithms: "binomial" (binomial tree), "pipelined" (the same tree in segments).
    """
    ctx, flat, reduce_op = _block("reduce", buf, comm, op, algorithm, root, check, timeout)
    if ctx.rank == root:
        reduce_op.finalize(flat, ctx.size)
    return buf


def explain(buf_or_nbytes: np.ndarray | int, comm: Any = None, p: int | None = None) -> str:
    """Why ``algorithm="auto"`` picks what it picks for this buffer (or byte count) on ``comm`` (or ``p`` ranks).

    For a call on a ``collectives.wrap(...)`` communicator, ``comm.explain("Allreduce", sendbuf,
    recvbuf, op)`` says whether it runs by hand (and with which algorithm) or goes to MPI, and why.
    """
    if p is None:
        p = context(comm).size
    if isinstance(buf_or_nbytes, np.ndarray):
        return select.explain(buf_or_nbytes.nbytes, p, buf_or_nbytes.dtype.itemsize)
    return select.explain(int(buf_or_nbytes), p)
