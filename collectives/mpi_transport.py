"""The MPI transport: runs algorithm steps with mpi4py's buffer-based point-to-point calls.

Buffers go to mpi4py as the numpy arrays themselves: mpi4py reads the element type from the
buffer's format (every dtype the collectives accept has one, float16 and complex included), so
nothing is pickled and no ``[buf, datatype]`` list is built per message. The reductions happen
in numpy on the receiving side.

Two transports, one per mode. :class:`MPITransport` (blocking, used by ``allreduce``): a step's
communication is carried out when the algorithm creates it, so the step it yields is already
complete and the generator is drained without looking at its steps; small messages are all
per-call overhead, so every method here is one MPI call and little else.
:class:`PollingMPITransport` is the same, but waits by testing and sleeping instead of spinning
inside MPI (for threads that wait while others compute on the same cores).
:class:`NonBlockingMPITransport` (``iallreduce``): steps hold MPI requests and complete in
:meth:`Step.wait` or, without blocking, in :meth:`Step.test`.

Scratch space comes from one arena per transport that is reused from call to call, so a large
allreduce does not page-fault a fresh scratch buffer every time; the typed views of the arena
are remembered too, since a repeated call asks for the same pieces in the same order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator

import numpy as np
from mpi4py import MPI

from collectives.ops import ReduceOp
from collectives.transport import Step, Transport

# An algorithm's tags are taken modulo TAG_SPAN and offset by ``tag_offset``; concurrent
# collectives use different multiples of TAG_SPAN. Wrapping is safe: MPI never lets two
# messages with the same source, tag and communicator overtake each other.
TAG_SPAN = 1 << 16
_ALIGN = 64
_VIEWS_LIMIT = 256  # scratch views remembered per transport (see scratch)
_drain = deque(maxlen=0).extend  # runs an iterator to its end in C, keeping nothing


class _Done(Step):
    """A step whose communication has already completed (blocking mode)."""

    __slots__ = ()

    def wait(self) -> None:
        pass

    def test(self) -> bool:
        return True


DONE = _Done()


class _Waitall(Step):
    __slots__ = ("requests",)

    def __init__(self, requests: list[MPI.Request]) -> None:
        self.requests = requests

    def wait(self) -> None:
        MPI.Request.Waitall(self.requests)

    def test(self) -> bool:
        return MPI.Request.Testall(self.requests)


class MPITransport(Transport):
    """Blocking transport over an mpi4py intracommunicator (one collective at a time).

    Every step is complete when the algorithm receives it (:data:`DONE`), and :meth:`run`
    drains the generator without waiting on anything.
    """

    def __init__(self, comm: MPI.Comm, tag_offset: int = 0) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.tag_offset = tag_offset
        # mpi4py's bound methods, looked up once: each message is one call and little else
        self._isend, self._irecv = comm.Isend, comm.Irecv
        self._sendrecv, self._send, self._recv = comm.Sendrecv, comm.Send, comm.Recv
        self._waitall = MPI.Request.Waitall
        self._arena = np.empty(0, np.uint8)
        self.used = 0  # bytes of the arena handed out in the current collective (reset when one starts)
        self._views: dict[tuple[int, int, np.dtype], tuple[np.ndarray, int]] = {}

    def isend(self, buf: np.ndarray, dest: int, tag: int) -> MPI.Request:
        return self._isend(buf, dest, self.tag_offset + tag % TAG_SPAN)

    def irecv(self, buf: np.ndarray, source: int, tag: int) -> MPI.Request:
        return self._irecv(buf, source, self.tag_offset + tag % TAG_SPAN)

    def wait(self, *requests: MPI.Request) -> Step:
        self._waitall(requests)
        return DONE

    def sendrecv(self, sendbuf: np.ndarray, dest: int, recvbuf: np.ndarray, source: int, tag: int) -> Step:
        tag = self.tag_offset + tag % TAG_SPAN
        self._sendrecv(sendbuf, dest, tag, recvbuf, source, tag)
        return DONE

    def send(self, buf: np.ndarray, dest: int, tag: int) -> Step:
        self._send(buf, dest, self.tag_offset + tag % TAG_SPAN)
        return DONE

    def recv(self, buf: np.ndarray, source: int, tag: int) -> Step:
        self._recv(buf, source, self.tag_offset + tag % TAG_SPAN)
        return DONE

    def reduce(self, op: ReduceOp, inout: np.ndarray, incoming: np.ndarray) -> None:
        op.ufunc(inout, incoming, inout)  # ReduceOp.reduce without its frame

    def scratch(self, n: int, dtype: np.dtype) -> np.ndarray:
        start = self.used
        try:  # a repeated collective asks for the same pieces in the same order
            view, self.used = self._views[start, n, dtype]
        except KeyError:
            if len(self._views) >= _VIEWS_LIMIT:  # bounded: a sweep over sizes must not grow it forever
                self._views.clear()
            found = self._views[start, n, dtype] = self._carve(start, n, dtype)
            view, self.used = found
        return view

    def _carve(self, start: int, n: int, dtype: np.dtype) -> tuple[np.ndarray, int]:
        nbytes = n * np.dtype(dtype).itemsize
        if start + nbytes > self._arena.size:
            # Grow for this and later calls; pieces handed out earlier keep the old arena alive.
            self._arena = np.empty(max(2 * self._arena.size, start + nbytes + _ALIGN), np.uint8)
            self._views.clear()
        return self._arena[start : start + nbytes].view(dtype), start + -(-nbytes // _ALIGN) * _ALIGN

    def release_scratch(self) -> None:
        """Make the whole arena available again (the previous collective has completed)."""
        self.used = 0

    def run(self, steps: Iterator[Step]) -> None:
        self.used = 0
        _drain(steps)  # every step is DONE: nothing to wait for


class PollingMPITransport(MPITransport):
    """Blocking transport that waits by testing its requests and sleeping in between, not inside MPI.

    MPICH's blocking calls spin until the message has moved. A thread that spins there holds a
    core: on a machine with no spare core (two ranks on two cores, or a DDP comm thread beside
    the training thread) it takes the core from the computation, and from the peer it is waiting
    for. A large message over shared memory needs several progress rounds on both sides, so when
    both ranks' waiting threads are being time-sliced against busy threads, one exchange took
    about 10 ms instead of 0.1-1 ms (ResNet-8's DDP buckets on 2 ranks, docs/distributed.md).
    Here a wait spins for ``spin`` seconds (a small message's whole latency), then tests every
    ``poll_interval`` seconds, sleeping (GIL and core released) in between: each test is an MPI
    progress call, so a transfer still advances between sleeps.
    """

    def __init__(self, comm: MPI.Comm, tag_offset: int = 0, poll_interval: float = 50e-6, spin: float = 50e-6) -> None:
        if not (poll_interval > 0 and spin >= 0):
            raise ValueError(f"poll_interval must be > 0 and spin >= 0 seconds, got {poll_interval!r} and {spin!r}")
        super().__init__(comm, tag_offset)
        self.poll_interval, self.spin = float(poll_interval), float(spin)
        self._testall = MPI.Request.Testall

    def _complete(self, requests: list[MPI.Request]) -> Step:
        testall = self._testall
        if testall(requests):
            return DONE
        clock = time.perf_counter
        spin_until = clock() + self.spin
        while clock() < spin_until:
            if testall(requests):
                return DONE
        sleep, interval = time.sleep, self.poll_interval
        while not testall(requests):
            sleep(interval)
        return DONE

    def wait(self, *requests: MPI.Request) -> Step:
        return self._complete(list(requests))

    def sendrecv(self, sendbuf: np.ndarray, dest: int, recvbuf: np.ndarray, source: int, tag: int) -> Step:
        tag = self.tag_offset + tag % TAG_SPAN
        return self._complete([self._irecv(recvbuf, source, tag), self._isend(sendbuf, dest, tag)])

    def send(self, buf: np.ndarray, dest: int, tag: int) -> Step:
        return self._complete([self.isend(buf, dest, tag)])

    def recv(self, buf: np.ndarray, source: int, tag: int) -> Step:
        return self._complete([self.irecv(buf, source, tag)])


class NonBlockingMPITransport(MPITransport):
    """Transport whose steps hold MPI requests, for collectives that progress in ``test()``/``wait()``.

    ``tag_offset`` (a multiple of :data:`TAG_SPAN`) separates concurrent collectives.
    """

    def wait(self, *requests: MPI.Request) -> Step:
        return _Waitall(list(requests))

    def sendrecv(self, sendbuf: np.ndarray, dest: int, recvbuf: np.ndarray, source: int, tag: int) -> Step:
        tag = self.tag_offset + tag % TAG_SPAN
        return _Waitall([self._isend(sendbuf, dest, tag), self._irecv(recvbuf, source, tag)])

    def send(self, buf: np.ndarray, dest: int, tag: int) -> Step:
        return _Waitall([self.isend(buf, dest, tag)])

    def recv(self, buf: np.ndarray, source: int, tag: int) -> Step:
        return _Waitall([self.irecv(buf, source, tag)])

    def run(self, steps: Iterator[Step]) -> None:
        self.used = 0
        for step in steps:
            step.wait()
