"""The step every collective call takes before it runs: check this rank's arguments, agree with the others.

A collective whose ranks disagree, or whose arguments are invalid on one rank, must fail on
every rank rather than hang the others (:mod:`collectives.agreement`). So a rank validates its
arguments (:func:`validate`: buffer, dtype, op, root, and the algorithm name through the
registry's one :func:`collectives.algorithms.resolve`) and then, error or not, takes part in the
signature exchange; only after it does any rank raise. Blocking calls (:mod:`collectives.api`),
non-blocking ones (:mod:`collectives.nonblocking`) and the mpi4py wrapper's own checks
(:func:`fail`) share this one step (:func:`prepare`). The exchange is waited for under the
watchdog (:mod:`collectives.watchdog`), so a rank that never arrives is a named error, not a hang.
A small recursive-doubling allreduce is carried out by the exchange itself
(:func:`collectives.agreement.fusable`): the call comes back ``done``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from collectives import agreement, select, watchdog
from collectives.algorithms import ALGORITHMS, BLOCKS, resolve
from collectives.link import Link, parse_link
from collectives.ops import ReduceOp, get_op

if TYPE_CHECKING:
    from collectives.context import CommContext


class Call(NamedTuple):
    """One rank's validated call: what it runs and on what."""

    flat: np.ndarray  # the user's buffer as a flat view of its memory
    op: ReduceOp | None  # None for broadcast and allgather
    run: Any  # allreduce: the algorithm ``run(t, flat, op)``; a building block: ``make(t, flat, op, root)``
    algorithm: str  # as resolved ("auto" replaced by the choice)
    link: Link | None = None  # the emulated link (allreduce's ``link=``)
    exchange: agreement.Exchange | None = None  # this call's check (blocking calls on more than one rank)
    done: bool = False  # the check's exchange carried out the allreduce itself: do not run ``run``


class Pending(NamedTuple):
    """A non-blocking agreement in flight: :func:`finish` it (wait, then verify) as the call's first step."""

    combined: np.ndarray
    request: Any
    names: dict[str, str]
    seq: int
    timeout: float


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


def validate(collective: str, size: int, buf: Any, op: Any, algorithm: Any, root: Any, link: Any = None) -> Call:
    """This rank's arguments checked (TypeError or ValueError naming the problem), without communicating."""
    flat = flat_view(collective, buf)
    reduce_op = get_op(op) if op is not None else None
    if reduce_op is not None and (why := reduce_op.check_dtype(flat.dtype)):
        raise TypeError(f"{collective}: {why}")
    if op is None and flat.dtype.kind not in "biufc":
        raise TypeError(f"{collective}: dtype {flat.dtype} is not a numeric dtype")
    if not isinstance(root, (int, np.integer)) or not 0 <= root < size:
        raise ValueError(f"{collective}: root must be a rank in 0..{size - 1}, got {root!r}")
    name = resolve(algorithm, collective=collective)
    if collective == "allreduce":
        if name == "auto":
            name = select.choose(size, flat.nbytes, flat.dtype.itemsize)
        spec = ALGORITHMS[name]
        run, constraints = spec.run, spec.constraints
    else:
        block = BLOCKS[collective][name]
        run, constraints = block.make, block.constraints
    if why := constraints.violation(size, flat.size):
        raise ValueError(f"{collective}: algorithm {name!r} {why}")
    try:
        parsed = None if link is None else parse_link(link)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{collective}: {e}") from None
    return Call(flat, reduce_op, run, name, parsed)


def prepare(
    collective: str,
    ctx: CommContext,
    buf: Any,
    op: Any,
    algorithm: Any,
    root: Any,
    check: bool | None,
    timeout: Any = None,
    *,
    link: Any = None,
    blocking: bool = True,
    label: str | None = None,
    error: BaseException | None = None,
    fuse: bool = False,
) -> tuple[Call, Pending | None]:
    """Validate, then agree with the other ranks; raise on every rank if any rank's call is invalid or differs.

    Blocking: returns when the ranks have agreed (or raises CollectiveTimeoutError when they do
    not all arrive within ``timeout`` seconds, see :mod:`collectives.watchdog`). Non-blocking:
    returns the agreement in flight (:class:`Pending`, None when unchecked) for the caller to
    :func:`finish` as its first step. A rank with invalid arguments still takes part in the
    exchange, so the others learn of it, then raises. ``label`` names the call in messages;
    ``error`` is one the caller found already (see :func:`fail`). ``fuse``: a blocking allreduce
    that :func:`collectives.agreement.fusable` accepts is carried out by the check's exchange,
    and the returned call says ``done``.
    """
    ctx.calls += 1
    call = None
    try:
        seconds = watchdog.seconds(timeout)
        if error is None:
            call = validate(collective, ctx.size, buf, op, algorithm, root, link)
    except (TypeError, ValueError) as e:
        seconds, error = watchdog.seconds(None), e
    if not agreement.checks_enabled(check) or ctx.size == 1:
        if error is not None:
            raise error
        return call, None
    if blocking:
        exchange = exchange_for(collective, ctx, call, op, algorithm, root, error=error, label=label, fuse=fuse)
        done = exchange(None if call is None else call.flat, ctx, seconds, error)  # raises if any call differs
        return call._replace(exchange=exchange, done=done), None
    sig, names = _signature(collective, ctx, call, op, algorithm, root, error, label, fused=False)
    combined, request = agreement.start(ctx.comm, sig)
    pending = Pending(combined, request, names, ctx.calls, seconds)
    if error is not None:  # an invalid call tells the others, then fails here and now
        finish(ctx, pending, error)
    return call, pending


def _signature(
    collective: str,
    ctx: CommContext,
    call: Call | None,
    op: Any,
    algorithm: Any,
    root: Any,
    error: BaseException | None,
    label: str | None,
    fused: bool,
) -> tuple[np.ndarray, dict[str, str]]:
    """This rank's signature of the call, and the names its mismatch errors use."""
    opname = call.op.name if call is not None and call.op is not None else str(op)
    flat = call.flat if call is not None else None
    described = agreement.describe(algorithm, None if call is None else call.algorithm, fused)
    sig = agreement.signature(
        collective,
        -1 if flat is None else flat.size,
        None if flat is None else flat.dtype,
        opname,
        described,
        root if isinstance(root, (int, np.integer)) else -1,
        error is not None,
        ctx.rank,
    )
    return sig, {"collective": label or collective, "op": opname, "algorithm": described}


def exchange_for(
    collective: str,
    ctx: CommContext,
    call: Call | None,
    op: Any,
    algorithm: Any,
    root: Any,
    *,
    error: BaseException | None = None,
    label: str | None = None,
    fuse: bool = False,
) -> agreement.Exchange:
    """The check of a blocking call; with ``fuse``, an allreduce that qualifies travels inside it
    (not one stretched to an emulated link: its steps must take the link's time)."""
    fused = fuse and call is not None and call.link is None and agreement.fusable(call.run, call.flat.nbytes)
    sig, names = _signature(collective, ctx, call, op, algorithm, root, error, label, fused)
    payload = (call.flat.dtype, call.flat.size, call.op) if fused else None
    return agreement.Exchange(ctx.mailbox, sig, names, payload)


def finish(ctx: CommContext, pending: Pending, error: BaseException | None = None) -> None:
    """Wait for the agreement (under the watchdog) and raise on every rank if any call was invalid or differs."""
    watchdog.wait(pending.request, ctx, pending.names["collective"], pending.seq, pending.timeout)
    agreement.verify(pending.combined, pending.names, error)


def fail(collective: str, ctx: CommContext, error: BaseException, check: bool | None, timeout: Any = None) -> None:
    """Raise ``error``, found by a caller's own checks (the mpi4py wrapper's), after taking part in the
    agreement as an invalid call, so that the other ranks raise too instead of waiting for this one."""
    prepare(collective, ctx, None, None, None, 0, check, timeout, error=error)
