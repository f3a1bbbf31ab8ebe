"""The cross-rank mismatch check: do all ranks make the same call?

A collective whose ranks disagree on the element count, dtype, op, algorithm or root does not
fail cleanly over MPI: it hangs, truncates a message, or returns garbage. Before running, the
ranks combine a short signature of their calls (the fields and their negations under max give
each field's minimum and maximum); if any field differs, every rank raises the same error. A
rank whose own arguments were invalid contributes that fact too, so the other ranks raise
instead of waiting for it forever.

Blocking calls combine the signatures in an :class:`Exchange`: recursive doubling over
point-to-point messages on a communicator of its own, every message ``[signature | payload]``.
Each rank forwards the combination of everything it has heard, so after lg p steps (and MPICH's
fold for other rank counts) every rank holds the combination of all, and a disagreement one rank
sees reaches every rank. When the call is itself a small recursive-doubling allreduce
(:func:`fusable`), the payload is the user's data, reduced on the way, so the check costs no
message of its own: the allreduce *is* the check's exchange. Every message fits one receive
buffer (:data:`FUSE_BYTES` of payload), so ranks that disagree on the count get a mismatch
error, never a truncated message. Non-blocking calls combine the signatures with one MPI
``Iallreduce`` instead (:func:`start`), so the check keeps the requests' order.

Every wait is :func:`collectives.watchdog.wait`'s, so a rank that never arrives makes the others
raise a timeout error naming it instead of hanging (and they do not spin while they wait). Turn
the check off with ``collectives.set_checks(False)`` or ``check=False``.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from collectives import watchdog
from collectives.algorithms.folding import FOLD_TAG, UNFOLD_TAG
from collectives.algorithms.recursive_doubling import recursive_doubling_allreduce, schedule
from collectives.ops import BOOL, LONG_DOUBLE_DTYPES, NUMERIC_DTYPES

if TYPE_CHECKING:
    from collectives.context import CommContext

enabled = True  # read directly on the hot path; change it with set_checks
_DTYPES = (*NUMERIC_DTYPES, BOOL, *LONG_DOUBLE_DTYPES)
FIELDS = ("collective", "element count", "dtype", "op", "algorithm", "root", "invalid rank")
HEADER_BYTES = 2 * len(FIELDS) * 8  # the signature: int64 fields, then their negations
# Payloads up to this many bytes travel in the check's messages. Above it the copy into the
# message costs more than the separate exchange it saves (about one small message).
FUSE_BYTES = 8192


class CollectiveMismatchError(RuntimeError):
    """Raised on every rank when the ranks called a collective with different arguments."""


def set_checks(on: bool) -> None:
    """Turn the cross-rank mismatch check on (the default) or off, for all later calls."""
    global enabled
    enabled = bool(on)


def checks_enabled(check: bool | None) -> bool:
    return enabled if check is None else bool(check)


def _code(name: str) -> int:
    return zlib.crc32(name.encode())


def dtype_code(dtype: np.dtype | None) -> int:
    try:
        return _DTYPES.index(dtype) + 1
    except ValueError:
        return 0


def signature(
    collective: str, count: int, dtype: np.dtype | None, op: str, algorithm: str, root: int, invalid: bool, rank: int
) -> np.ndarray:
    """The int64 signature of one call: fields then their negations."""
    fields = [
        _code(collective),
        count,
        dtype_code(dtype),
        _code(op),
        _code(algorithm),
        root,
        rank + 1 if invalid else 0,
    ]
    sig = np.array(fields + [0] * len(fields), dtype=np.int64)
    sig[len(fields) :] = -sig[: len(fields)]
    return sig


def start(comm: Any, sig: np.ndarray) -> tuple[np.ndarray, Any]:
    """Start combining the ranks' signatures: (where the result goes, the request to wait on)."""
    from mpi4py import MPI

    # One buffer for both halves: the result keeps the send half alive while MPI may still read it
    # (mpi4py does not hold a non-blocking collective's buffers, and Open MPI reads them late).
    both = np.empty(2 * sig.size, sig.dtype)
    out, send = both[: sig.size], both[sig.size :]
    send[...] = sig
    return out, comm.Iallreduce(send, out, MPI.MAX)


def verify(combined: np.ndarray, names: dict[str, str], local_error: BaseException | None) -> None:
    """Raise on every rank if the combined signature shows a disagreement or an invalid call.

    ``names`` maps this rank's op and algorithm codes back to names for the message.
    """
    k = len(FIELDS)
    hi, lo = combined[:k], -combined[k:]
    bad = hi[6]
    if local_error is not None:
        raise local_error
    if bad:
        raise CollectiveMismatchError(
            f"{names['collective']}: rank {bad - 1} was called with invalid arguments (see the error on that rank);"
            " every rank stops"
        )
    for i, field in enumerate(FIELDS[:6]):
        if hi[i] != lo[i]:
            if field == "dtype":
                seen = f"{_DTYPES[lo[i] - 1]} and {_DTYPES[hi[i] - 1]}"
            elif field in ("element count", "root"):
                seen = f"from {lo[i]} to {hi[i]}"
            elif field == "algorithm":
                seen = f"this rank runs {names[field]}"
            else:
                seen = f"this rank passed {names[field]!r}"
            raise CollectiveMismatchError(
                f"{names['collective']}: the ranks disagree on the {field} ({seen}); every rank must make the same"
                f" call (turn this check off with collectives.set_checks(False))"
            )


def fusable(run: Any, nbytes: int) -> bool:
    """Whether an allreduce running ``run`` on ``nbytes`` is carried out inside the check's exchange.

    Only the built-in recursive doubling (what ``auto`` picks for small messages): the exchange is
    that algorithm, step for step and operand for operand, so the result has the same bits.
    """
    return run is recursive_doubling_allreduce and nbytes <= FUSE_BYTES


def describe(passed: Any, resolved: str | None, fused: bool) -> str:
    """The algorithm as the signature compares it: as passed, what it resolved to, whether fused.

    Ranks must agree on all three: a rank that carries its data in the check's messages and one
    that does not would wait for each other's algorithm for ever.
    """
    text = repr(str(passed))
    if resolved is not None and resolved != passed:
        text += f" (chosen: {resolved!r})"
    return text + (", its data inside the check's messages" if fused else "")


class Leg(NamedTuple):
    """One step of a rank's part in the exchange."""

    dest: int | None  # the rank this rank's message goes to, if any
    source: int | None  # the rank whose message this rank receives, if any
    tag: int
    # The last step: the message it receives carries every rank's signature, so if it agrees every rank
    # agreed, and the result may go straight into the user's buffer (tests/collectives/test_agreement_route.py)
    last: bool
    replace: bool = False  # the message received is the finished result (unfolding), not a partial one


def route(p: int, rank: int) -> tuple[Leg, ...]:
    """Rank ``rank``'s steps: recursive doubling's exchanges, with MPICH's fold when p is not a power of two."""
    folding, exchanges = schedule(p, rank)
    steps = [(partner, partner, tag, False) for tag, partner in exchanges]
    if folding is not None and folding.vrank < 0:  # sits out: hands its data over, gets the result back
        steps = [(rank + 1, None, FOLD_TAG, False), (None, rank + 1, UNFOLD_TAG, True)]
    elif folding is not None:  # reduces its even neighbour's data in, sends it the result at the end
        steps = [(None, rank - 1, FOLD_TAG, False), *steps, (rank - 1, None, UNFOLD_TAG, False)]
    return tuple(Leg(d, s, tag, i == len(steps) - 1, replace) for i, (d, s, tag, replace) in enumerate(steps))


class Mailbox:
    """One communicator's side of the exchange: a private duplicate, one receive buffer, the route.

    The receive buffer holds the largest message (signature plus :data:`FUSE_BYTES`), so any
    rank's message fits whatever this rank expected; receives are persistent requests, started
    once per step (cheaper than posting a new one), and so are the sends of the exchanges that
    are kept for reuse (:meth:`Exchange.persist`). :meth:`close` frees them all: call it before
    MPI is finalized (the communicator context does, at exit).
    """

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.inbox = np.zeros(HEADER_BYTES + FUSE_BYTES, np.uint8)
        self.legs = route(self.size, self.rank)
        self.receives = [None if leg.source is None else comm.Recv_init(self.inbox, leg.source, leg.tag)
                         for leg in self.legs]  # fmt: skip
        self.sends: dict[int, list[Any]] = {}  # id(exchange) -> its persistent sends

    def close(self) -> None:
        for request in [*self.receives, *(r for sends in self.sends.values() for r in sends)]:
            if request is not None:
                request.Free()
        self.receives, self.sends = [], {}


class Exchange:
    """One call pattern's check, made once and run per call: ``exchange(flat, ctx, timeout)``.

    Holds the outgoing message ``[signature | payload]`` (the payload only when :func:`fusable`)
    and views of where the partner's payload lands. Returns True when the payload was reduced on
    the way (the allreduce is done); raises on every rank if any rank's call differs.
    """

    def __init__(self, mailbox: Mailbox, sig: np.ndarray, names: dict[str, str], payload: Any = None) -> None:
        """``payload``: (dtype, count, op) of a fused allreduce, else None."""
        self.mailbox, self.sig, self.names = mailbox, sig, names
        self.expected = sig.tobytes()  # what every message says when every rank made this call
        self.fused = payload is not None
        dtype, count, op = payload if self.fused else (np.dtype(np.uint8), 0, None)
        nbytes = count * np.dtype(dtype).itemsize
        self.packed = np.empty(HEADER_BYTES + nbytes, np.uint8)
        self.header = self.packed[:HEADER_BYTES].view(np.int64)  # the combination so far, sent on
        self.header[...] = sig
        self.work = self.packed[HEADER_BYTES:].view(dtype)  # the partial result, sent on
        self.incoming = mailbox.inbox[HEADER_BYTES : HEADER_BYTES + nbytes].view(dtype)
        self.ufunc = op.ufunc if op is not None else None
        self.copy_out = self.fused and mailbox.legs[-1].source is None  # the result does not end in a receive
        self.received = mailbox.inbox[:HEADER_BYTES]  # the partner's combination so far
        self.isend, self.name = mailbox.comm.Isend, names["collective"]
        self.sends = [None] * len(mailbox.legs)  # persistent sends, once persist() made them
        self.steps = tuple(zip(mailbox.legs, mailbox.receives, self.sends))

    def persist(self) -> None:
        """Send through persistent requests from now on: an exchange that is run again and again (a
        plan's) saves the cost of posting a new send each step (half a microsecond of an 8-byte
        allreduce's five). :meth:`release` or the mailbox's ``close`` frees them."""
        if self.mailbox.receives and id(self) not in self.mailbox.sends:
            comm = self.mailbox.comm
            self.sends = [None if leg.dest is None else comm.Send_init(self.packed, leg.dest, leg.tag)
                          for leg in self.mailbox.legs]  # fmt: skip
            self.mailbox.sends[id(self)] = self.sends
            self.steps = tuple(zip(self.mailbox.legs, self.mailbox.receives, self.sends))

    def release(self) -> None:
        """Free the persistent sends (the exchange goes back to posting a send per step)."""
        for request in self.mailbox.sends.pop(id(self), ()):
            if request is not None:
                request.Free()
        self.sends = [None] * len(self.mailbox.legs)
        self.steps = tuple(zip(self.mailbox.legs, self.mailbox.receives, self.sends))

    def __call__(self, flat: np.ndarray | None, ctx: CommContext, timeout: float, error: Any = None) -> bool:
        packed, work, incoming, ufunc, fused = self.packed, self.work, self.incoming, self.ufunc, self.fused
        received, expected, isend, wait, seq = self.received, self.expected, self.isend, watchdog.wait, ctx.calls
        if fused:
            work[...] = flat
        agreed = True
        for (dest, source, tag, last, replace), receive, send in self.steps:
            if source is not None:
                receive.Start()
            if send is not None:
                send.Start()
            elif dest is not None:
                send = isend(packed, dest, tag)
            if source is not None and not receive.Test():
                wait(receive, ctx, self.name, seq, timeout)
            if dest is not None and not send.Test():
                wait(send, ctx, self.name, seq, timeout)  # before the message's buffer changes below
            if source is None:
                continue
            if agreed and received.tobytes() == expected:  # the sender and all it heard made this call
                if fused:
                    out = flat if last else work
                    if replace:
                        out[...] = incoming
                    else:
                        ufunc(work, incoming, out)  # own first, as recursive doubling's t.reduce
            else:  # a disagreement somewhere: combine and pass it on, leave the user's buffer alone
                agreed = False
                np.maximum(self.header, received.view(np.int64), out=self.header)
        if not agreed or error is not None:
            combined = self.header.copy()
            self.header[...] = self.sig  # the next call starts from this rank's own signature again
            verify(combined, self.names, error)
            raise CollectiveMismatchError(f"{self.name}: the ranks' calls differ")  # not reached: verify raised
        if self.copy_out:
            flat[...] = work
        return fused
