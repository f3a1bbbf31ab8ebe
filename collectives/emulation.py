"""Emulate a slower interconnect on one machine by stretching every communication step.

Between processes on one node, MPI moves data through shared memory at memory speed, so a
gradient allreduce is almost free and overlap, bucket size and algorithm choice barely matter.
Wrapping a transport in :class:`EmulatedLinkTransport` makes each step last at least as long as
the alpha-beta model of the link says its largest message would take (latency + bytes /
bandwidth), so those trade-offs become visible. The data still moves for real and results are
unchanged; only time is added.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from collectives.ops import ReduceOp
from collectives.transport import Step, Transport

_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


@dataclass(frozen=True)
class Link:
    """A point-to-point link: ``latency`` in seconds, ``bandwidth`` in bytes per second."""

    latency: float
    bandwidth: float

    def message_time(self, nbytes: int) -> float:
        return self.latency + nbytes / self.bandwidth

    def __str__(self) -> str:
        return f"{self.bandwidth * 8 / 1e9:g} Gb/s, {self.latency * 1e6:g} us"


def parse_link(spec: str) -> Link:
    """Parse ``"10Gbps,20us"`` (bits per second; ``GBps`` / ``GB/s`` for bytes) into a Link.

    A name known to ``collectives.sim``'s presets (e.g. ``ib-100g``) is accepted too, when the
    simulator is installed.
    """
    text = spec.strip()
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 2:
        bw = re.fullmatch(r"([0-9.]+(?:e-?[0-9]+)?)\s*([kmgt]?)(b|B)(?:ps|/s)", parts[0], re.IGNORECASE)
        lat = re.fullmatch(r"([0-9.]+(?:e-?[0-9]+)?)\s*(s|ms|us|µs|ns)", parts[1])
        if bw and lat and bw.group(2).lower() in _UNITS:
            per_second = float(bw.group(1)) * _UNITS[bw.group(2).lower()]
            bytes_per_second = per_second / 8 if bw.group(3) == "b" else per_second
            latency = float(lat.group(1)) * _TIME[lat.group(2)]
            if bytes_per_second <= 0 or latency < 0:
                raise ValueError(
                    f"link {spec!r}: bandwidth must be positive and latency non-negative (e.g. '10Gbps,20us')"
                )
            return Link(latency, bytes_per_second)
    preset = _preset(text)
    if preset is not None:
        return preset
    raise ValueError(
        f"cannot parse link {spec!r}: expected BANDWIDTH,LATENCY such as '10Gbps,20us' or '25GB/s,2us'"
        " (b = bits, B = bytes), or a simulator preset name"
    )


def _preset(name: str) -> Link | None:
    try:
        from collectives.sim import presets  # type: ignore[attr-defined]
    except ImportError:
        return None
    lookup = getattr(presets, "link_preset", None)
    if lookup is None:
        return None
    try:
        found = lookup(name)
    except (KeyError, ValueError):
        return None
    return Link(float(found.latency), float(found.bandwidth))


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

    def __init__(self, inner: Transport, link: Link) -> None:
        self.inner = inner
        self.link = link
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
