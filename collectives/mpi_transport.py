"""The MPI transport: runs algorithm steps with mpi4py's buffer-based point-to-point calls.

Buffers go to mpi4py as the numpy arrays themselves: mpi4py reads the element type from the
buffer's format (every dtype the collectives accept has one, float16 and complex included), so
nothing is pickled and no ``[buf, datatype]`` list is built per message. The reductions happen
in numpy on the receiving side.

Two transports, one per mode. :class:`MPITransport` (blocking, used by ``allreduce``): a step's
communication is carried out when the algorithm creates it, so the step it yields is already
complete and the generator is drained without looking at its steps; small messages are all
per-call overhead, so every method here is one MPI call and little else.
:class:`NonBlockingMPITransport` (``iallreduce``): steps hold MPI requests and complete in
:meth:`Step.wait` or, without blocking, in :meth:`Step.test`.

Scratch space comes from one arena per transport that is reused from call to call, so a large
allreduce does not page-fault a fresh scratch buffer every time; the typed views of the arena
are remembered too, since a repeated call asks for the same pieces in the same order.

Waiting when ranks share cores: MPI's blocking calls wait by polling, so a rank waiting for a
large message keeps its core busy while the rank that must send it (or, with MPICH's
single-copy transfers, must take part in it) waits for that very core. With more ranks on the
node than cores (:func:`naps`), an exchange of at least :data:`NAP_BYTES` is therefore waited
for by testing and sleeping briefly in between, which hands the core to a rank that has work;
a small exchange stays one blocking call (a nap is longer than the whole message).
``COLLECTIVES_WAIT=mpi`` (always MPI's own wait) or ``=nap`` (always nap) overrides the choice.
A transport made with ``nap_bytes=0`` naps on every wait, after spinning ``spin`` seconds (a small
message's whole latency): DDP's communicator does (``minidl.distributed.comm.poll_waits``), since its
comm thread waits beside backward on the same cores, and a wait spinning inside MPI took the core
from backward and from the peer it waited for (one ResNet-8 bucket exchange took about 10 ms
instead of 0.1-1 ms with 2 ranks on 2 cores, docs/distributed.md).
"""

from __future__ import annotations

import math
import os
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
# Napping waits (module docstring): from this size an exchange lasts hundreds of microseconds
# even with a core to itself, so a nap (about 0.1 ms with Python's sleep) costs little. Below it
# are the 256-512 KiB segments of the pipelined trees and the ring, whose many short waits would
# each pay a nap's wake-up (an exploratory napping ring at 16 MiB, p = 4: 0.70-0.83x MPI, against
# 0.75-1.03x waiting inside MPI).
NAP_BYTES = 1 << 20
NAP_SECONDS = 20e-6
WAIT_MODES = ("auto", "mpi", "nap")
# Launchers say how many ranks run on this node (Hydra, Open MPI); without one, assume the whole communicator.
_LOCAL_SIZE_ENV = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")


def node_ranks(default: int) -> int:
    """How many ranks of the job run on this node, as the launcher says (``default`` if it does not)."""
    for key in _LOCAL_SIZE_ENV:
        try:
            return max(1, int(os.environ[key]))
        except (KeyError, ValueError):
            continue
    return default


def naps(comm_size: int, mode: str | None = None) -> bool:
    """Whether large exchanges wait by napping: ``COLLECTIVES_WAIT`` (``mode``) "nap", or "auto" and more
    ranks on the node than it has cores (binding ranks to cores does not change how many share them)."""
    mode = os.environ.get("COLLECTIVES_WAIT", "auto") if mode is None else mode
    if mode not in WAIT_MODES:
        raise ValueError(f"COLLECTIVES_WAIT must be one of {', '.join(WAIT_MODES)}, got {mode!r}")
    if mode != "auto":
        return mode == "nap"
    return node_ranks(comm_size) > (os.cpu_count() or 1)


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


def nap(requests: list[MPI.Request], seconds: float = NAP_SECONDS, spin: float = 0.0) -> None:
    """Wait for ``requests`` without holding the core: test (back to back for ``spin`` seconds), then
    sleep ``seconds`` between tests. Each test is an MPI progress call, so a transfer still advances."""
    testall, sleep = MPI.Request.Testall, time.sleep
    if spin > 0:
        clock = time.perf_counter
        spin_until = clock() + spin
        while clock() < spin_until:
            if testall(requests):
                return
    while not testall(requests):
        sleep(seconds)


class MPITransport(Transport):
    """Blocking transport over an mpi4py intracommunicator (one collective at a time).

    Every step is complete when the algorithm receives it (:data:`DONE`), and :meth:`run`
    drains the generator without waiting on anything. ``nap_bytes``: exchanges of at least this
    many bytes wait by napping (0: every wait, ``math.inf``: none; None: ``COLLECTIVES_WAIT``'s
    choice, :data:`NAP_BYTES` when ranks outnumber cores); ``nap_seconds`` and ``spin`` shape the
    nap (:func:`nap`).
    """

    def __init__(
        self,
        comm: MPI.Comm,
        tag_offset: int = 0,
        *,
        nap_bytes: float | None = None,
        nap_seconds: float = NAP_SECONDS,
        spin: float = 0.0,
    ) -> None:
        if not (nap_seconds > 0 and spin >= 0 and (nap_bytes is None or nap_bytes >= 0)):
            raise ValueError(
                f"nap_seconds must be > 0, spin >= 0 and nap_bytes >= 0 or None;"
                f" got {nap_seconds!r}, {spin!r} and {nap_bytes!r}"
            )
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.tag_offset = tag_offset
        # mpi4py's bound methods, looked up once: each message is one call and little else
        self._isend, self._irecv = comm.Isend, comm.Irecv
        self._sendrecv, self._send, self._recv = comm.Sendrecv, comm.Send, comm.Recv
        self._waitall = MPI.Request.Waitall
        if nap_bytes is None:  # wait for large exchanges by napping when ranks share cores (module docstring)
            nap_bytes = NAP_BYTES if naps(self.size) else math.inf
        self.nap_bytes, self.nap_seconds, self.spin = nap_bytes, float(nap_seconds), float(spin)
        self._arena = np.empty(0, np.uint8)
        self.used = 0  # bytes of the arena handed out in the current collective (reset when one starts)
        self._views: dict[tuple[int, int, np.dtype], tuple[np.ndarray, int]] = {}

    def isend(self, buf: np.ndarray, dest: int, tag: int) -> MPI.Request:
        return self._isend(buf, dest, self.tag_offset + tag % TAG_SPAN)

    def irecv(self, buf: np.ndarray, source: int, tag: int) -> MPI.Request:
        return self._irecv(buf, source, self.tag_offset + tag % TAG_SPAN)

    def _nap(self, requests: list[MPI.Request]) -> Step:
        nap(requests, self.nap_seconds, self.spin)
        return DONE

    def wait(self, *requests: MPI.Request) -> Step:
        if self.nap_bytes == 0:  # the requests' sizes are not known here: only an always-napping transport naps
            return self._nap(list(requests))
        self._waitall(requests)
        return DONE

    def sendrecv(self, sendbuf: np.ndarray, dest: int, recvbuf: np.ndarray, source: int, tag: int) -> Step:
        tag = self.tag_offset + tag % TAG_SPAN
        if recvbuf.nbytes >= self.nap_bytes or sendbuf.nbytes >= self.nap_bytes:
            return self._nap([self._irecv(recvbuf, source, tag), self._isend(sendbuf, dest, tag)])
        self._sendrecv(sendbuf, dest, tag, recvbuf, source, tag)
        return DONE

    def send(self, buf: np.ndarray, dest: int, tag: int) -> Step:
        if buf.nbytes >= self.nap_bytes:
            return self._nap([self.isend(buf, dest, tag)])
        self._send(buf, dest, self.tag_offset + tag % TAG_SPAN)
        return DONE

    def recv(self, buf: np.ndarray, source: int, tag: int) -> Step:
        if buf.nbytes >= self.nap_bytes:
            return self._nap([self.irecv(buf, source, tag)])
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
