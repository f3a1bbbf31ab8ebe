"""The watchdog: a collective whose ranks do not all arrive fails after a timeout instead of hanging.

Every collective starts with the ranks' agreement exchange (:mod:`collectives.agreement`), so
that exchange is where a rank that never arrives (stuck in its own code, crashed without
aborting, or calling something else) is noticed. :func:`wait` completes it the way a patient
person waits: it tests the request, spinning only for the first few tens of microseconds (a
small message's whole latency), then sleeps between tests, doubling the sleep up to
:data:`MAX_SLEEP`, so a rank that waits for minutes does not burn a core.

After ``timeout`` seconds the waiting rank takes a census before raising: it tells every other
rank (on a private communicator) which call it is waiting in, and listens for :data:`GRACE`
seconds; every rank that is itself waiting in a collective answers from its own wait loop. The
ranks that do not answer are the missing ones, and :class:`CollectiveTimeoutError` names them,
with the call (collective and its sequence number on the communicator) and what the ranks that
did answer are waiting in. The process is then marked to end the whole job with MPI_Abort when
it exits (a communicator with a missing rank cannot be used again).

Timeouts are in seconds: ``timeout=`` on every call, else :data:`default` (the
``COLLECTIVES_TIMEOUT`` environment variable, else 300 s); 0 or None switches it off for a call.
"""

from __future__ import annotations

import math
import os
import time
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collectives.context import CommContext

SPIN = 50e-6  # seconds of back-to-back tests before the first sleep: a small message's latency
FIRST_SLEEP = 10e-6
MAX_SLEEP = 1e-3  # the longest sleep between tests: at most this much is added to a late arrival
GRACE = 0.5  # seconds the census listens for answers
QUERY, ANSWER = 1, 2
_CENSUS_TAG = 7


class CollectiveTimeoutError(RuntimeError):
    """Raised when the other ranks did not all reach a collective within its timeout."""


def _from_env() -> float:
    text = os.environ.get("COLLECTIVES_TIMEOUT", "300")
    try:
        return seconds(float(text))
    except ValueError:
        raise ValueError(
            f"COLLECTIVES_TIMEOUT must be a number of seconds (0 switches the timeout off), got {text!r}"
        ) from None


def seconds(timeout: Any) -> float:
    """A timeout argument as seconds (0 = off); None is :data:`default`. Negative, NaN or non-numbers raise."""
    if timeout is None:
        return default
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float, np.integer, np.floating)):
        raise ValueError(f"timeout must be a number of seconds (0 or None: off), got {timeout!r}")
    value = float(timeout)
    if not value >= 0:
        raise ValueError(f"timeout must be a non-negative number of seconds (0: off), got {timeout!r}")
    return math.inf if value == 0 else value


def set_timeout(timeout: float | None) -> None:
    """The timeout of every later call without ``timeout=`` (seconds; 0 or None: no timeout)."""
    global default
    default = math.inf if timeout is None else seconds(timeout)


default = _from_env()


def wait(request: Any, ctx: CommContext, collective: str, seq: int, timeout: float) -> None:
    """Complete ``request`` (an MPI request of the agreement exchange) or raise CollectiveTimeoutError.

    ``timeout`` is seconds as given by :func:`seconds` (inf: wait for ever, still without spinning).
    """
    test = request.Test
    if test():
        return
    clock = time.perf_counter
    start = clock()
    spin_until = start + SPIN
    while clock() < spin_until:
        if test():
            return
    deadline = start + timeout
    pause = FIRST_SLEEP
    census = ctx.census
    while not test():
        now = clock()
        if now >= deadline:
            raise _timed_out(ctx, collective, seq, timeout)
        census.answer(collective, seq)
        time.sleep(min(pause, deadline - now))
        pause = min(2 * pause, MAX_SLEEP)


def _code(name: str) -> int:
    return zlib.crc32(name.encode())


class Census:
    """Who is waiting where: queries and answers on a private duplicate of the communicator."""

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        self.comm = comm
        self._any, self._status = MPI.ANY_SOURCE, MPI.Status()
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.names: dict[int, str] = {}  # collective code -> name, for the ranks' answers
        self.seen: dict[int, tuple[int, int]] = {}  # rank -> (sequence number, collective code)
        self._sends: list[Any] = []  # keep the buffers of outstanding sends alive

    def _send(self, kind: int, collective: str, seq: int, dest: int) -> None:
        self.names[_code(collective)] = collective
        msg = np.array([kind, seq, _code(collective)], np.int64)
        self._sends.append((msg, self.comm.Isend(msg, dest, _CENSUS_TAG)))

    def answer(self, collective: str, seq: int) -> None:
        """Answer every query that has arrived (called from wait loops while they sleep)."""
        status = self._status
        # A matched probe: the message found is the one received, even if another thread's wait loop
        # (the progress thread's) answers at the same time.
        while (found := self.comm.Improbe(self._any, _CENSUS_TAG, status)) is not None:
            msg = np.empty(3, np.int64)
            found.Recv(msg)
            source = status.Get_source()
            self.seen[source] = (int(msg[1]), int(msg[2]))
            if msg[0] == QUERY:
                self._send(ANSWER, collective, seq, source)

    def take(self, collective: str, seq: int, grace: float) -> dict[int, tuple[int, int]]:
        """Ask every rank where it is waiting; the answers heard within ``grace`` seconds."""
        for dest in range(self.size):
            if dest != self.rank:
                self._send(QUERY, collective, seq, dest)
        deadline = time.perf_counter() + grace
        while time.perf_counter() < deadline and len(self.seen) < self.size - 1:
            self.answer(collective, seq)
            time.sleep(1e-3)
        return dict(self.seen)


def _timed_out(ctx: CommContext, collective: str, seq: int, timeout: float) -> CollectiveTimeoutError:
    census = ctx.census
    heard = census.take(collective, seq, GRACE)
    missing = [r for r in range(ctx.size) if r != ctx.rank and r not in heard]
    elsewhere = [
        f"rank {r} is waiting in {census.names.get(code, 'another collective')} #{s}"
        for r, (s, code) in sorted(heard.items())
        if (s, code) != (seq, _code(collective))
    ]
    parts = [
        f"{collective} #{seq} on rank {ctx.rank}: the other ranks did not all arrive within {timeout:g} s",
        f"missing: rank{'s' if len(missing) != 1 else ''} {', '.join(map(str, missing))}"
        if missing
        else "every rank answered the census, so none is missing: the ranks are in different calls",
    ]
    if elsewhere:
        parts.append("; ".join(elsewhere))
    _abort_at_exit()
    return CollectiveTimeoutError(
        "; ".join(parts) + " (a missing rank is computing, stuck or dead; the job ends with MPI_Abort when this"
        " process exits; set the timeout with timeout= or COLLECTIVES_TIMEOUT)"
    )


def _abort_at_exit() -> None:
    """Make this process end the whole job (MPI_Abort) when it exits: the communicator is broken."""
    import atexit

    from mpi4py.run import set_abort_status

    from collectives.abort import FORWARD_GRACE

    set_abort_status(1)
    # runs before mpi4py's abort (atexit is last in, first out): the launcher forwards the report first
    atexit.register(time.sleep, FORWARD_GRACE)
