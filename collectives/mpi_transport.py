"""The MPI transport: runs algorithm steps with mpi4py's buffer-based point-to-point calls.

Messages travel as raw bytes (``MPI.BYTE``), so every numpy dtype works, float16 and complex
included, and nothing is pickled. The reductions happen in numpy on the receiving side.

Two modes. Blocking (``allreduce``): a step's communication is carried out when the algorithm
creates it and the step it yields is already complete, which saves a Python object and a call
per step (small messages are all per-call overhead). Non-blocking (``iallreduce``): steps hold
MPI requests and complete in :meth:`Step.wait` or, without blocking, in :meth:`Step.test`.

Scratch space comes from one arena per transport that is reused from call to call, so a large
allreduce does not page-fault a fresh scratch buffer every time.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from mpi4py import MPI

from collectives.transport import Step, Transport

# An algorithm's tags are taken modulo TAG_SPAN and offset by ``tag_offset``; concurrent
# collectives use different multiples of TAG_SPAN. Wrapping is safe: MPI never lets two
# messages with the same source, tag and communicator overtake each other.
TAG_SPAN = 1 << 16
_ALIGN = 64


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
    """Transport over an mpi4py intracommunicator.

    ``tag_offset`` (a multiple of :data:`TAG_SPAN`) separates concurrent collectives;
    ``blocking`` selects the mode described in the module docstring.
    """

    def __init__(self, comm: MPI.Comm, tag_offset: int = 0, blocking: bool = True) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.tag_offset = tag_offset
        self.blocking = blocking
        self._arena = np.empty(0, np.uint8)
        self._used = 0

    def isend(self, buf: np.ndarray, dest: int, tag: int) -> MPI.Request:
        return self.comm.Isend([buf, MPI.BYTE], dest, self.tag_offset + (tag % TAG_SPAN))

    def irecv(self, buf: np.ndarray, source: int, tag: int) -> MPI.Request:
        return self.comm.Irecv([buf, MPI.BYTE], source, self.tag_offset + (tag % TAG_SPAN))

    def wait(self, *requests: MPI.Request) -> Step:
        if self.blocking:
            MPI.Request.Waitall(requests)
            return DONE
        return _Waitall(list(requests))

    def sendrecv(self, sendbuf: np.ndarray, dest: int, recvbuf: np.ndarray, source: int, tag: int) -> Step:
        t = self.tag_offset + (tag % TAG_SPAN)
        if self.blocking:
            self.comm.Sendrecv([sendbuf, MPI.BYTE], dest, t, [recvbuf, MPI.BYTE], source, t)
            return DONE
        comm = self.comm
        return _Waitall([comm.Isend([sendbuf, MPI.BYTE], dest, t), comm.Irecv([recvbuf, MPI.BYTE], source, t)])

    def send(self, buf: np.ndarray, dest: int, tag: int) -> Step:
        if self.blocking:
            self.comm.Send([buf, MPI.BYTE], dest, self.tag_offset + (tag % TAG_SPAN))
            return DONE
        return _Waitall([self.isend(buf, dest, tag)])

    def recv(self, buf: np.ndarray, source: int, tag: int) -> Step:
        if self.blocking:
            self.comm.Recv([buf, MPI.BYTE], source, self.tag_offset + (tag % TAG_SPAN))
            return DONE
        return _Waitall([self.irecv(buf, source, tag)])

    def scratch(self, n: int, dtype: np.dtype) -> np.ndarray:
        nbytes = n * np.dtype(dtype).itemsize
        start = self._used
        if start + nbytes > self._arena.size:
            # Grow for this and later calls; pieces handed out earlier keep the old arena alive.
            self._arena = np.empty(max(2 * self._arena.size, start + nbytes + _ALIGN), np.uint8)
        self._used = start + -(-nbytes // _ALIGN) * _ALIGN
        return self._arena[start : start + nbytes].view(dtype)

    def release_scratch(self) -> None:
        """Make the whole arena available again (the previous collective has completed)."""
        self._used = 0

    def run(self, steps: Iterator[Step]) -> None:
        self._used = 0
        for step in steps:
            step.wait()
