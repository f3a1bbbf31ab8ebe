"""Non-blocking allreduce: start it, compute, then ``wait()`` (or poll with ``test()``).

Each request runs the same algorithm generator as ``allreduce``, on its own transport in
non-blocking mode with its own tag range (``tag_offset``), so any number can be outstanding
at once. Two ways to make progress while the caller computes:

- ``progress="thread"``: one background thread per process drives the outstanding requests
  in the order they were started, blocking in MPI (which releases the GIL) between steps;
- ``progress="test"``: nothing happens between the caller's calls; each ``test()`` advances the
  algorithm as far as it can without blocking, and ``wait()`` finishes it.

Which overlaps better was measured with ``python -m collectives.bench --overlap`` (numbers in
BENCHMARKS.md); the default, :data:`DEFAULT_PROGRESS`, is the winner there.

Requests must be started in the same order on every rank (as for MPI's non-blocking
collectives); the cross-rank check runs as the request's first step, on a non-blocking MPI
allreduce posted by the caller, so it keeps that order even with the thread. Waiting for it is
the watchdog's (:mod:`collectives.watchdog`): ``timeout=`` seconds, then a
:class:`~collectives.watchdog.CollectiveTimeoutError` from ``wait()`` naming the missing ranks.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from collectives.api import context
from collectives.mpi_transport import NonBlockingMPITransport
from collectives.ops import ReduceOp
from collectives.prepare import Pending, finish, prepare
from collectives.transport import Step

DEFAULT_PROGRESS = "test"
POLL_INTERVAL = float(os.environ.get("COLLECTIVES_POLL_INTERVAL", "0"))  # seconds; 0: block inside MPI
PROGRESS_MODES = ("thread", "test")


class _Agreement(Step):
    """The request's first step: the ranks' agreement, waited for under the watchdog."""

    __slots__ = ("ctx", "pending")

    def __init__(self, ctx: Any, pending: Pending) -> None:
        self.ctx, self.pending = ctx, pending

    def wait(self) -> None:
        finish(self.ctx, self.pending)

    def test(self) -> bool:
        if not self.pending.request.Test():
            return False
        finish(self.ctx, self.pending)  # complete: verifies without waiting
        return True


class AllreduceRequest:
    """A started allreduce. ``test()`` says whether it is done; ``wait()`` finishes it and returns the buffer."""

    def __init__(self, buf: np.ndarray, steps: Iterator[Step], progress: str) -> None:
        self.buf = buf
        self._steps = steps
        self._step: Step | None = None
        self._error: BaseException | None = None
        self._finished = threading.Event()
        self.progress = progress
        if progress == "thread":
            _worker().submit(self)

    # -- driving the generator -------------------------------------------------------------
    def _drive(self, block: bool, poll_interval: float = 0.0) -> bool:
        """Advance; with ``block`` run to the end. True when finished (or failed).

        With a ``poll_interval`` a blocked step is tested and the thread sleeps in between
        instead of spinning inside MPI, leaving the core to the caller's computation.
        """
        try:
            while True:
                step = self._step
                if step is not None:
                    if block and poll_interval:
                        while not step.test():
                            time.sleep(poll_interval)
                    elif block:
                        step.wait()
                    elif not step.test():
                        return False
                self._step = next(self._steps)
        except StopIteration:
            pass
        except BaseException as e:  # handed to the caller in test()/wait()
            self._error = e
        self._step = None
        self._finished.set()
        return True

    def _result(self) -> np.ndarray:
        if self._error is not None:
            raise self._error
        return self.buf

    def test(self) -> bool:
        """True once the allreduce has completed (raises its error if it failed); never blocks."""
        if self.progress == "test" and not self._finished.is_set():
            self._drive(block=False)
        if self._finished.is_set():
            self._result()
            return True
        return False

    def wait(self) -> np.ndarray:
        """Block until the allreduce has completed; returns the buffer holding the result."""
        if self.progress == "test":
            if not self._finished.is_set():
                self._drive(block=True)
        else:
            self._finished.wait()
        return self._result()

    Test = test
    Wait = wait


class _ProgressThread:
    """One daemon thread that runs submitted requests to completion, first come first served."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[AllreduceRequest] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="collectives-progress", daemon=True)
        self.thread.start()

    def submit(self, request: AllreduceRequest) -> None:
        self.queue.put(request)

    def _loop(self) -> None:
        while True:
            self.queue.get()._drive(block=True, poll_interval=POLL_INTERVAL)


_thread: _ProgressThread | None = None
_thread_lock = threading.Lock()


def _worker() -> _ProgressThread:
    global _thread
    with _thread_lock:
        if _thread is None:
            _thread = _ProgressThread()
    return _thread


def _steps(
    ctx: Any, pending: Pending | None, run: Any, t: NonBlockingMPITransport, flat: np.ndarray, op: ReduceOp
) -> Iterator[Step]:
    if pending is not None:  # the agreement first, in the order the requests were started
        yield _Agreement(ctx, pending)
    yield from run(t, flat, op)
    op.finalize(flat, t.size)


def iallreduce(
    buf: np.ndarray,
    comm: Any = None,
    op: str | ReduceOp = "sum",
    algorithm: str = "ring",
    *,
    progress: str | None = None,
    check: bool | None = None,
    timeout: float | None = None,
) -> AllreduceRequest:
    """Start reducing ``buf`` in place across ``comm``; arguments as for ``allreduce``.

    ``progress`` is "thread" or "test" (default :data:`DEFAULT_PROGRESS`). Do not touch ``buf``
    until ``wait()`` returns (or ``test()`` returns True).
    """
    progress = progress or DEFAULT_PROGRESS
    if progress not in PROGRESS_MODES:
        raise ValueError(f"iallreduce: progress must be one of {PROGRESS_MODES}, got {progress!r}")
    ctx = context(comm)
    tag_offset = ctx.next_tag_offset()  # before anything can fail: every rank must count every call
    call, pending = prepare("allreduce", ctx, buf, op, algorithm, 0, check, timeout, blocking=False, label="iallreduce")
    t = NonBlockingMPITransport(ctx.comm, tag_offset=tag_offset)
    return AllreduceRequest(buf, _steps(ctx, pending, call.run, t, call.flat, call.op), progress)
