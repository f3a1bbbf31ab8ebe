"""The simulator's implementation of :class:`collectives.transport.Transport`, one per virtual rank.

Requests are plain lists indexed by the constants below (creating one costs a fifth of a
class instance, and a large simulation creates millions); algorithms treat them as opaque
handles anyway. The :class:`collectives.sim.scheduler.Simulator` that owns the transports
matches messages, moves data and advances the virtual clocks.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from collectives.ops import ReduceOp
from collectives.sim.errors import MessageError, SimulationError
from collectives.transport import Step, Transport

if TYPE_CHECKING:
    from collectives.sim.scheduler import Simulator

SEND, RECV = 0, 1
# A request: [KIND, RANK, PEER, TAG, BUF, NBYTES, TIME posted, DONE time or None, STEP or None,
#             PARTNER (while its data copy is deferred), REGION (address range, for hazards)]
KIND, RANK, PEER, TAG, BUF, NBYTES, TIME, DONE, STEP, PARTNER, REGION = range(11)


def describe(req: list) -> str:
    """A request in words, for error messages and deadlock reports."""
    if req[KIND] == SEND:
        return f"send to rank {req[PEER]}, tag {req[TAG]} ({req[NBYTES]} B)"
    return f"recv from rank {req[PEER]}, tag {req[TAG]}"


class SimStep(Step):
    """What a simulated algorithm yields: complete when all its requests are."""

    __slots__ = ("pending", "ready", "requests", "transport", "yielded")

    def __init__(self, transport: SimTransport, *requests: list) -> None:
        self.transport = transport
        self.requests = requests
        self.yielded = False
        pending = 0
        ready = 0.0
        rank = transport.rank
        try:
            for req in requests:
                if req[STEP] is not None or req[RANK] != rank or len(req) != 11:
                    raise TypeError
                req[STEP] = self
                done = req[DONE]
                if done is None:
                    pending += 1
                elif done > ready:
                    ready = done
        except (TypeError, IndexError, KeyError):
            raise _bad_wait(transport, req) from None
        self.pending = pending
        self.ready = ready  # latest completion time among the completed requests

    def wait(self) -> None:
        if not self.test():
            raise SimulationError(
                "a simulated step cannot block: yield it from the algorithm and let the simulator drive the ranks"
            )

    def test(self) -> bool:
        """True once every request has completed, at or before this rank's virtual clock."""
        return self.pending == 0 and self.ready <= self.transport.now


def _bad_wait(transport: SimTransport, req: Any) -> MessageError:
    if isinstance(req, list) and len(req) == 11 and req[RANK] == transport.rank:
        return MessageError(f"rank {transport.rank}: the request '{describe(req)}' is waited for twice")
    return MessageError(
        f"rank {transport.rank}: t.wait got {req!r}; expected requests this rank's t.isend/t.irecv returned"
    )


class SimTransport(Transport):
    """Transport of virtual rank ``rank``: everything is forwarded to the owning simulator."""

    def __init__(self, sim: Simulator, rank: int, size: int) -> None:
        self.sim = sim
        self.rank = rank
        self.size = size
        self.now = 0.0  # this rank's virtual clock (s)
        self.step: SimStep | None = None  # the step this rank is blocked on
        self.finished = False
        self.outstanding = 0  # requests posted and not yet retired by a completed step
        self.active: list[list] = []  # the same requests, kept when tracking data (hazards)
        if not sim.call:
            # No per-call cost to charge: the hot calls go straight to the simulator (a frame fewer).
            self.isend = partial(sim.post_send, self)  # type: ignore[method-assign]
            self.irecv = partial(sim.post_recv, self)  # type: ignore[method-assign]
            self.wait = partial(SimStep, self)  # type: ignore[method-assign]
        self.reduce = partial(sim.reduce, self)  # type: ignore[method-assign]
        self.copy = partial(sim.copy, self)  # type: ignore[method-assign]

    # Each method is one call of the real transport, and costs the model's call_overhead once.
    def isend(self, buf: Any, dest: int, tag: int) -> list:
        self.now += self.sim.call
        return self.sim.post_send(self, buf, dest, tag)

    def irecv(self, buf: Any, source: int, tag: int) -> list:
        self.now += self.sim.call
        return self.sim.post_recv(self, buf, source, tag)

    def wait(self, *requests: list) -> SimStep:
        self.now += self.sim.call
        return SimStep(self, *requests)

    def sendrecv(self, sendbuf: Any, dest: int, recvbuf: Any, source: int, tag: int) -> SimStep:
        sim = self.sim
        self.now += sim.call
        return SimStep(self, sim.post_send(self, sendbuf, dest, tag), sim.post_recv(self, recvbuf, source, tag))

    def send(self, buf: Any, dest: int, tag: int) -> SimStep:
        self.now += self.sim.call
        return SimStep(self, self.sim.post_send(self, buf, dest, tag))

    def recv(self, buf: Any, source: int, tag: int) -> SimStep:
        self.now += self.sim.call
        return SimStep(self, self.sim.post_recv(self, buf, source, tag))

    def reduce(self, op: ReduceOp, inout: Any, incoming: Any) -> None:
        self.sim.reduce(self, op, inout, incoming)

    def copy(self, dst: Any, src: Any) -> None:
        self.sim.copy(self, dst, src)

    def scratch(self, n: int, dtype: Any) -> Any:
        return self.sim.payload.scratch(self.rank, int(n), dtype)

    def run(self, steps: Any) -> None:
        raise SimulationError("a SimTransport is driven by its Simulator; use collectives.sim.simulate(...)")
