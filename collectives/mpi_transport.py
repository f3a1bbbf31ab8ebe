"""The MPI transport: runs algorithm steps with mpi4py's buffer-based point-to-point calls.

Messages travel as raw bytes (``MPI.BYTE``), so every numpy dtype works, float16 and complex
included, and nothing is pickled. The reductions happen in numpy on the receiving side.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from collectives.transport import Step, Transport


class _Waitall(Step):
    __slots__ = ("requests",)

    def __init__(self, requests: list[MPI.Request]) -> None:
        self.requests = requests

    def wait(self) -> None:
        MPI.Request.Waitall(self.requests)

    def test(self) -> bool:
        return MPI.Request.Testall(self.requests)


class _Sendrecv(Step):
    """A blocking exchange in one MPI call: fewer calls per step than Isend+Irecv+Waitall."""

    __slots__ = ("args", "comm")

    def __init__(self, comm: MPI.Comm, args: tuple[Any, ...]) -> None:
        self.comm = comm
        self.args = args

    def wait(self) -> None:
        self.comm.Sendrecv(*self.args)

    def test(self) -> bool:
        self.wait()
        return True


class MPITransport(Transport):
    """Transport over an mpi4py intracommunicator; ``tag_offset`` separates concurrent collectives."""

    def __init__(self, comm: MPI.Comm, tag_offset: int = 0) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.tag_offset = tag_offset

    def isend(self, buf: np.ndarray, dest: int, tag: int) -> MPI.Request:
        return self.comm.Isend([buf, MPI.BYTE], dest, self.tag_offset + tag)

    def irecv(self, buf: np.ndarray, source: int, tag: int) -> MPI.Request:
        return self.comm.Irecv([buf, MPI.BYTE], source, self.tag_offset + tag)

    def wait(self, *requests: MPI.Request) -> Step:
        return _Waitall(list(requests))

    def sendrecv(self, sendbuf: np.ndarray, dest: int, recvbuf: np.ndarray, source: int, tag: int) -> Step:
        t = self.tag_offset + tag
        return _Sendrecv(self.comm, ([sendbuf, MPI.BYTE], dest, t, [recvbuf, MPI.BYTE], source, t))
