"""The point-to-point interface every collective algorithm is written against.

An algorithm is a function ``algo(t, buf, op)`` returning an iterator of steps, usually a
generator function: it posts messages through the transport ``t`` and *yields* a step each
time it must wait for communication to finish::

    yield t.sendrecv(chunk, right, incoming, left, tag=step)   # wait for this exchange
    t.reduce(op, chunk, incoming)                               # local work, no waiting

Each ``yield`` is one communication step of the textbook figure. The same algorithm code then
runs unchanged on two transports: :class:`collectives.mpi_transport.MPITransport`, which
executes each step with real MPI calls (blocking: the step is already complete when yielded;
:class:`~collectives.mpi_transport.NonBlockingMPITransport` for ``iallreduce``), and the
simulator's transport, which runs thousands of
virtual ranks in one process by interleaving their generators and charging each step to a
virtual clock. Nothing in an algorithm may talk to MPI directly.

Rules that keep an algorithm runnable everywhere: touch data only by slicing 1-D buffers
(``buf[a:b]``), ``t.reduce`` (combine), ``t.copy`` (move locally) and messages; get temporary
space from ``t.scratch``; read only ``buf.size`` and ``buf.dtype`` from a buffer. The simulator
relies on this to run algorithms on symbolic data (which ranks' contributions an element
holds) and, for scale, on payload-free buffers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np

from collectives.ops import ReduceOp


class Step(ABC):
    """Something an algorithm yields: the point where it waits for communication."""

    @abstractmethod
    def wait(self) -> None:
        """Block until the step's communication has completed."""

    @abstractmethod
    def test(self) -> bool:
        """Complete the step if possible without blocking; True when it is done."""


class Transport(ABC):
    """Point-to-point messaging among ``size`` ranks, seen from rank ``rank``.

    Tags are small non-negative integers chosen by the algorithm; a transport may offset them
    so that several collectives can be in flight at once without their messages mixing.
    Buffers are contiguous 1-D numpy arrays (slices of the user's buffer or scratch space).
    """

    rank: int
    size: int

    @abstractmethod
    def isend(self, buf: np.ndarray, dest: int, tag: int) -> Any:
        """Start sending ``buf`` to ``dest``; returns a request for :meth:`wait`."""

    @abstractmethod
    def irecv(self, buf: np.ndarray, source: int, tag: int) -> Any:
        """Start receiving into ``buf`` from ``source``; returns a request for :meth:`wait`."""

    @abstractmethod
    def wait(self, *requests: Any) -> Step:
        """A step that completes when all ``requests`` have."""

    def sendrecv(self, sendbuf: np.ndarray, dest: int, recvbuf: np.ndarray, source: int, tag: int) -> Step:
        """A step that sends ``sendbuf`` to ``dest`` while receiving ``recvbuf`` from ``source``."""
        return self.wait(self.isend(sendbuf, dest, tag), self.irecv(recvbuf, source, tag))

    def send(self, buf: np.ndarray, dest: int, tag: int) -> Step:
        return self.wait(self.isend(buf, dest, tag))

    def recv(self, buf: np.ndarray, source: int, tag: int) -> Step:
        return self.wait(self.irecv(buf, source, tag))

    def reduce(self, op: ReduceOp, inout: np.ndarray, incoming: np.ndarray) -> None:
        """``inout = op(inout, incoming)`` elementwise: the local computation of a collective."""
        op.reduce(inout, incoming)

    def copy(self, dst: np.ndarray, src: np.ndarray) -> None:
        """``dst[...] = src``: local data movement inside a collective."""
        np.copyto(dst, src)

    def scratch(self, n: int, dtype: np.dtype) -> np.ndarray:
        """Temporary space for ``n`` elements, valid until the collective returns."""
        return np.empty(n, dtype=dtype)

    def run(self, steps: Iterator[Step]) -> None:
        """Drive an algorithm to completion, blocking at every step."""
        for step in steps:
            step.wait()
