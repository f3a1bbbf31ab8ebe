"""Emulate a slower interconnect on one machine by stretching every communication step.

Between processes on one node, MPI moves data through shared memory at memory speed, so a
gradient allreduce is almost free and overlap, bucket size and algorithm choice barely matter.
Wrapping a transport in :class:`EmulatedLinkTransport` makes each step last at least as long as
the alpha-beta model of the link says its largest message would take (latency + bytes /
bandwidth), so those trade-offs become visible. The data still moves for real and results are
unchanged; only time is added. The link is :class:`collectives.link.Link` (re-exported here
with :func:`~collectives.link.parse_link` for older imports).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from collectives.link import Link, parse_link
from collectives.ops import ReduceOp
from collectives.transport import Step, Transport


class _StretchedStep(Step):
    __slots__ = ("inner", "seconds", "started")

    def __init__(self, inner: Step, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds
        self.started = time.perf_counter()

    def wait(self) -> None:
        self.inner.wait()
        _sleep_until(self.started + self.seconds)

    def test(self) -> bool:
        return self.inner.test() and time.perf_counter() >= self.started + self.seconds


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.perf_counter()
    if remaining > 2e-4:
        time.sleep(remaining - 1e-4)  # sleep releases the GIL; spin only for the last bit
    while time.perf_counter() < deadline:
        pass


class EmulatedLinkTransport(Transport):
    """Delegates to ``inner`` but makes each step last at least the link model's message time."""

    def __init__(self, inner: Transport, link: Link | str) -> None:
        self.inner = inner
        self.link = parse_link(link)
        self.rank = inner.rank
        self.size = inner.size
        self._posted: dict[int, int] = {}

    def isend(self, buf: np.ndarray, dest: int, tag: int) -> Any:
        req = self.inner.isend(buf, dest, tag)
        self._posted[id(req)] = buf.nbytes
        return req

    def irecv(self, buf: np.ndarray, source: int, tag: int) -> Any:
        req = self.inner.irecv(buf, source, tag)
        self._posted[id(req)] = buf.nbytes
        return req

    def wait(self, *requests: Any) -> Step:
        largest = max((self._posted.pop(id(r), 0) for r in requests), default=0)
        return _StretchedStep(self.inner.wait(*requests), self.link.message_time(largest))

    def sendrecv(self, sendbuf: np.ndarray, dest: int, recvbuf: np.ndarray, source: int, tag: int) -> Step:
        seconds = self.link.message_time(max(sendbuf.nbytes, recvbuf.nbytes))
        return _StretchedStep(self.inner.sendrecv(sendbuf, dest, recvbuf, source, tag), seconds)

    def reduce(self, op: ReduceOp, inout: np.ndarray, incoming: np.ndarray) -> None:
        self.inner.reduce(op, inout, incoming)

    def copy(self, dst: np.ndarray, src: np.ndarray) -> None:
        self.inner.copy(dst, src)

    def scratch(self, n: int, dtype: np.dtype) -> np.ndarray:
        return self.inner.scratch(n, dtype)

    def run(self, steps: Iterator[Step]) -> None:
        release = getattr(self.inner, "release_scratch", None)
        if release is not None:  # a new collective: the inner transport's scratch arena is free again
            release()
        super().run(steps)


__all__ = ["EmulatedLinkTransport", "Link", "parse_link"]
