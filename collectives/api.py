"""The public entry points on numpy arrays over an mpi4py communicator.

Every function works in place on a contiguous numpy array of any shape (treated as flat), runs
one of the hand-written algorithms over a private duplicate of ``comm`` and returns the array.
Before running, the ranks check that they all make the same call (:mod:`collectives.agreement`);
an invalid argument on one rank raises on every rank.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from collectives import agreement, select
from collectives.algorithms import ALGORITHMS
from collectives.algorithms.chunking import chunk_bounds
from collectives.algorithms.folding import Pow2Group
from collectives.algorithms.rabenseifner import doubling_allgather, halving_reduce_scatter, largest_half
from collectives.algorithms.ring import ring_allgather, ring_reduce_scatter
from collectives.algorithms.spec import Constraints
from collectives.algorithms.tree import SEGMENT_BYTES as TREE_SEGMENT_BYTES
from collectives.algorithms.tree import binomial_broadcast, binomial_reduce
from collectives.emulation import EmulatedLinkTransport
from collectives.ops import ReduceOp, get_op
from collectives.plans import Plan
from collectives.transport import Step, Transport

if TYPE_CHECKING:
    from collectives.context import CommContext


_context: Callable[[Any], CommContext] | None = None
drain = deque(maxlen=0).extend  # runs a blocking transport's steps to the end, in C


def context(comm: Any) -> CommContext:
    """The communicator's context; mpi4py is imported on first use, so ``import collectives`` stays MPI-free."""
    global _context
    if _context is None:
        from collectives.context import context as real

        _context = real
    return _context(comm)


def flat_view(name: str, buf: Any) -> np.ndarray:
    """The buffer as a flat view sharing its memory, or an error saying what is wrong with it."""
    if not isinstance(buf, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(buf).__name__}")
    if not buf.flags.writeable:
        raise ValueError(f"{name}: the buffer is read-only; the result is written into it")
    if buf.flags.c_contiguous:
        return buf.reshape(-1)
    if buf.flags.f_contiguous:
        return buf.T.reshape(-1)  # elementwise ops do not care about the order of memory
    raise ValueError(f"{name}: the buffer must be contiguous (use np.ascontiguousarray)")


def get_algorithm(name: str) -> Any:
    """The generator function of a registered algorithm; the error lists the valid names."""
    try:
        return ALGORITHMS[name].run
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown allreduce algorithm {name!r}; expected 'auto' or one of {sorted(ALGORITHMS)}"
        ) from None


# The building blocks: name -> (generator factory, constraints). A factory takes
# (transport, flat buffer, op, root) and returns the generator.
Factory = Callable[[Transport, np.ndarray, ReduceOp, int], Iterator[Step]]
POW2 = Constraints(power_of_two=True)
BLOCKS: dict[str, dict[str, tuple[Factory, Constraints]]] = {
    "reduce_scatter": {
        "ring": (lambda t, b, op, root: ring_reduce_scatter(t, b, op), Constraints()),
        "halving": (
            lambda t, b, op, root: halving_reduce_scatter(
                t, b, op, Pow2Group(t.size, t.rank), t.scratch(largest_half(b.size, t.size), b.dtype)
            ),
            POW2,
        ),
    },
    "allgather": {
        "ring": (lambda t, b, op, root: ring_allgather(t, b), Constraints()),
        "doubling": (lambda t, b, op, root: doubling_allgather(t, b, Pow2Group(t.size, t.rank)), POW2),
    },
    "broadcast": {
        "binomial": (lambda t, b, op, root: binomial_broadcast(t, b, root), Constraints()),
        "pipelined": (lambda t, b, op, root: binomial_broadcast(t, b, root, TREE_SEGMENT_BYTES), Constraints()),
    },
    "reduce": {
        "binomial": (lambda t, b, op, root: binomial_reduce(t, b, op, root), Constraints()),
        "pipelined": (lambda t, b, op, root: binomial_reduce(t, b, op, root, TREE_SEGMENT_BYTES), Constraints()),
    },
}


def _prepare(
    collective: str, ctx: CommContext, buf: Any, op: Any, algorithm: str, root: int
) -> tuple[np.ndarray | None, ReduceOp | None, Any, BaseException | None]:
    """Validate one rank's arguments: (flat buffer, op, runnable, error or None)."""
    try:
        flat = flat_view(collective, buf)
        reduce_op = get_op(op) if op is not None else None
        if reduce_op is not None and (why := reduce_op.check_dtype(flat.dtype)):
            raise TypeError(f"{collective}: {why}")
        if op is None and flat.dtype.kind not in "biufc":
            raise TypeError(f"{collective}: dtype {flat.dtype} is not a numeric dtype")
        if not isinstance(root, (int, np.integer)) or not 0 <= root < ctx.size:
            raise ValueError(f"{collective}: root must be a rank in 0..{ctx.size - 1}, got {root!r}")
        if collective == "allreduce":
            if algorithm == "auto":
                algorithm = select.choose(ctx.size, flat.nbytes, flat.dtype.itemsize)
            spec = ALGORITHMS.get(algorithm) if isinstance(algorithm, str) else None
            if spec is None:
                get_algorithm(algorithm)  # raises with the list of names
            if why := spec.constraints.violation(ctx.size, flat.size):
                raise ValueError(f"allreduce: algorithm {algorithm!r} {why}")
            return flat, reduce_op, spec.run, None
        blocks = BLOCKS[collective]
        if algorithm not in blocks:
            raise ValueError(f"{collective}: unknown algorithm {algorithm!r}; expected one of {sorted(blocks)}")
        factory, constraints = blocks[algorithm]
        if why := constraints.violation(ctx.size, flat.size):
            raise ValueError(f"{collective}: algorithm {algorithm!r} {why}")
        return flat, reduce_op, factory, None
    except (TypeError, ValueError) as e:
        return None, None, None, e


def _agree(collective: str, ctx: CommContext, buf: Any, op: Any, algorithm: str, root: int, check: bool | None):
    flat, reduce_op, runnable, error = _prepare(collective, ctx, buf, op, algorithm, root)
    if agreement.checks_enabled(check) and ctx.size > 1:
        opname = reduce_op.name if reduce_op else str(op)
        sig = agreement.signature(
            collective,
            -1 if flat is None else flat.size,
            None if flat is None else flat.dtype,
            opname,
            str(algorithm),
            root,
            error is not None,
            ctx.rank,
        )
        combined, _ = agreement.start(ctx.comm, sig)
        names = {"collective": collective, "op": opname, "algorithm": str(algorithm)}
        agreement.verify(combined, names, error)
    elif error is not None:
        raise error
    return flat, reduce_op, runnable


def allreduce(
    buf: np.ndarray,
    comm: Any = None,
    op: str | ReduceOp = "sum",
    algorithm: str = "ring",
    *,
    check: bool | None = None,
    link: Any = None,
) -> np.ndarray:
    """Reduce ``buf`` elementwise across all ranks of ``comm``, in place; returns ``buf``.

    ``comm`` defaults to ``MPI.COMM_WORLD``; ``op`` is one of "sum", "prod", "max", "min", "avg";
    ``algorithm`` names one of ``collectives.ALGORITHMS`` or is "auto" (see ``explain``);
    ``check`` overrides the cross-rank mismatch check for this call; ``link`` (a
    :class:`collectives.emulation.Link`) stretches every step to that link's modelled time.
    """
    # The hot path: a call seen before on this communicator runs from its cached plan
    # (collectives.plans); everything else, including every error, takes _allreduce_full.
    ctx = _last_ctx if comm is _last_comm else _remember(comm)
    if buf.__class__ is np.ndarray and link is None:
        flags = buf.flags
        if flags.writeable and flags.forc:  # C- or Fortran-contiguous: ravel("K") is a view
            try:
                plan = ctx.plans[algorithm, op, buf.dtype, buf.size]
            except (KeyError, TypeError):  # a new call, or an unhashable argument: the full path
                plan = None
            if plan is not None:
                run, reduce_op, average, exchange, combined, expected, names = plan
                if exchange is not None and (agreement.enabled if check is None else check):
                    exchange()
                    if combined.tobytes() != expected:
                        agreement.verify(combined, names, None)  # raises, naming the field
                flat = buf if buf.ndim == 1 else buf.ravel("K")
                t = ctx.transport
                t.used = 0  # what t.run does, without its frame: every step is complete when yielded
                drain(run(t, flat, reduce_op))
                if average:
                    reduce_op.finalize(flat, ctx.size)
                return buf
    return _allreduce_full(buf, ctx, op, algorithm, check, link)


_last_comm: Any = object()  # the communicator of the latest call, as passed (None included) ...
_last_ctx: Any = None  # ... and its context: consecutive calls on one communicator skip the lookup


def _remember(comm: Any) -> CommContext:
    global _last_comm, _last_ctx
    ctx = context(comm)
    _last_comm, _last_ctx = comm, ctx
    return ctx


def _allreduce_full(buf: Any, ctx: CommContext, op: Any, algorithm: Any, check: bool | None, link: Any) -> np.ndarray:
    """Validate and agree, run, and remember the call as a plan when it may take the hot path next time."""
    flat, reduce_op, run = _agree("allreduce", ctx, buf, op, algorithm, 0, check)
    if link is None and buf.__class__ is np.ndarray:
        ctx.plans[(algorithm, op, buf.dtype, buf.size)] = _plan(ctx, flat, reduce_op, run, algorithm)
    t = ctx.transport if link is None else EmulatedLinkTransport(ctx.transport, link)
    t.run(run(t, flat, reduce_op))
    reduce_op.finalize(flat, ctx.size)
    return buf


def _plan(ctx: CommContext, flat: np.ndarray, reduce_op: ReduceOp, run: Any, algorithm: str) -> Plan:
    names = {"collective": "allreduce", "op": reduce_op.name, "algorithm": str(algorithm)}
    if ctx.size == 1:
        return Plan(run, reduce_op, reduce_op.average, None, None, b"", names)
    sig = agreement.signature("allreduce", flat.size, flat.dtype, reduce_op.name, str(algorithm), 0, False, ctx.rank)
    combined = np.empty_like(sig)
    # When every rank made this call, the combined (max of fields, max of negated fields) is sig itself.
    return Plan(run, reduce_op, reduce_op.average, agreement.exchanger(ctx.comm, sig, combined), combined,
                sig.tobytes(), names)  # fmt: skip


def _block(collective: str, buf: Any, comm: Any, op: Any, algorithm: str, root: int, check: bool | None):
    ctx = context(comm)
    flat, reduce_op, factory = _agree(collective, ctx, buf, op, algorithm, root, check)
    t = ctx.transport
    t.run(factory(t, flat, reduce_op, root))
    return ctx, flat, reduce_op


def reduce_scatter(
    buf: np.ndarray,
    comm: Any = None,
    op: str | ReduceOp = "sum",
    algorithm: str = "ring",
    *,
    check: bool | None = None,
) -> np.ndarray:
    """Reduce ``buf`` across ranks and leave chunk r of the result on rank r; returns that chunk (a view).

    Chunks follow ``collectives.chunk_bounds(buf.size, p)`` (the first ``size % p`` chunks have
    one extra element). The rest of ``buf`` is used as workspace. Algorithms: "ring" (any p),
    "halving" (recursive halving, p a power of two).
    """
    ctx, flat, reduce_op = _block("reduce_scatter", buf, comm, op, algorithm, 0, check)
    b = chunk_bounds(flat.size, ctx.size)
    mine = flat[b[ctx.rank] : b[ctx.rank + 1]]
    reduce_op.finalize(mine, ctx.size)
    return mine


def allgather(buf: np.ndarray, comm: Any = None, algorithm: str = "ring", *, check: bool | None = None) -> np.ndarray:
    """Fill chunk i of ``buf`` (``chunk_bounds(buf.size, p)``) on every rank from rank i's chunk i; returns ``buf``.

    Algorithms: "ring" (any p), "doubling" (recursive doubling, p a power of two).
    """
    _block("allgather", buf, comm, None, algorithm, 0, check)
    return buf


def broadcast(
    buf: np.ndarray, root: int = 0, comm: Any = None, algorithm: str = "binomial", *, check: bool | None = None
) -> np.ndarray:
    """Copy ``root``'s ``buf`` into ``buf`` on every rank; returns ``buf``.

    Algorithms: "binomial" (binomial tree), "pipelined" (the same tree in segments, for large buffers).
    """
    _block("broadcast", buf, comm, None, algorithm, root, check)
    return buf


def reduce(
    buf: np.ndarray,
    root: int = 0,
    comm: Any = None,
    op: str | ReduceOp = "sum",
    algorithm: str = "binomial",
    *,
    check: bool | None = None,
) -> np.ndarray:
    """Reduce ``buf`` across ranks into ``buf`` on ``root``; other ranks' ``buf`` is left unchanged.

    Algorithms: "binomial" (binomial tree), "pipelined" (the same tree in segments).
    """
    ctx, flat, reduce_op = _block("reduce", buf, comm, op, algorithm, root, check)
    if ctx.rank == root:
        reduce_op.finalize(flat, ctx.size)
    return buf


def explain(buf_or_nbytes: np.ndarray | int, comm: Any = None, p: int | None = None) -> str:
    """Why ``algorithm="auto"`` picks what it picks for this buffer (or byte count) on ``comm`` (or ``p`` ranks)."""
    if p is None:
        p = context(comm).size
    if isinstance(buf_or_nbytes, np.ndarray):
        return select.explain(buf_or_nbytes.nbytes, p, buf_or_nbytes.dtype.itemsize)
    return select.explain(int(buf_or_nbytes), p)
