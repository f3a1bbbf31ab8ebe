"""The scheduler: p algorithm generators interleaved in one process, under MPI's matching rules.

Each virtual rank runs the unchanged algorithm generator on its own :class:`SimTransport`.
Sends and receives are matched the moment both are posted, first-in first-out per (source,
destination, tag): MPI's non-overtaking rule, so with no wildcards the matching is the one
every MPI would make. A rank that yields a step sleeps until the step's requests complete and
resumes at the virtual time they did; ranks run in order of their virtual clocks, so messages
reach the links roughly in the order they would on a real machine.

A send completes only once it has been matched with a receive (MPI's synchronous-send view of
a "safe" program: code that relies on the library buffering a message is reported as a
deadlock, since real MPI hangs on it as soon as messages get large).

With a seed, ties between ranks ready at the same time are broken at random and each message's
data is copied either as soon as it is matched or as late as MPI allows (when the sender or the
receiver returns from its wait), so code that reuses a buffer too early gets different answers
under different seeds. Hazard tracking catches the same bugs directly, whatever the order.
"""

from __future__ import annotations

import heapq
import random
import time as _time
from collections import deque
from collections.abc import Callable, Iterator
from itertools import count
from typing import Any

from collectives.link import Link
from collectives.ops import ReduceOp
from collectives.sim.cost_model import CostModel, curve_time
from collectives.sim.errors import (
    AlgorithmError,
    DeadlockError,
    HazardError,
    MessageError,
    PortabilityError,
    SimulationError,
)
from collectives.sim.network import make_network
from collectives.sim.payload import Payload
from collectives.sim.result import SimResult
from collectives.sim.topology import FullyConnected, Topology
from collectives.sim.transport import (
    BUF,
    DONE,
    KIND,
    NBYTES,
    PARTNER,
    PEER,
    RANK,
    RECV,
    REGION,
    SEND,
    STEP,
    TAG,
    TIME,
    SimStep,
    SimTransport,
    describe,
)

MSG, REDUCE, COPY = "msg", "reduce", "copy"
_BLOCKED_SHOWN = 16  # ranks listed in a deadlock report before "... and N more"


def default_topology(p: int, model: CostModel) -> Topology:
    """The fully connected network whose links have the model's ``beta``."""
    return FullyConnected(p, Link(0.0, model.link.bandwidth))  # the model's alpha is charged per message


class Simulator:
    """Runs one collective on ``p`` virtual ranks; see the module docstring for the semantics."""

    def __init__(
        self,
        p: int,
        payload: Payload,
        model: CostModel | None = None,
        topology: Topology | None = None,
        seed: int | None = None,
        jitter: float = 0.0,
        timeline: bool = False,
    ) -> None:
        if p < 1:
            raise ValueError(f"a simulation needs at least one rank, got p={p}")
        self.p = p
        self.payload = payload
        self.model = model = model or CostModel()
        if topology is not None and topology.p != p:
            raise ValueError(f"the topology has {topology.p} ranks but the simulation has {p}")
        self.topology = topology or default_topology(p, model)
        self.network = make_network(self.topology, model)
        self.transfer = self.network.transfer
        self.rng = random.Random(seed) if seed is not None else None
        self.jitter = jitter
        if jitter and self.rng is None:
            self.rng = random.Random(0)
        self.tracking = payload.tracks_data
        self.o, self.g = model.o, model.g
        self.gamma, self.delta = model.gamma, model.delta
        self.reduce_curve, self.copy_curve = model.reduce_curve, model.copy_curve
        self.call = model.call_overhead
        self.sync_send, self.eager_limit = model.sync_send, model.eager_limit
        self.ports = None if model.ports == "multi" else model.ports
        self.send_free = [0.0] * p  # when a rank's send port is next free (one-port and NIC models)
        self.recv_free = [0.0] * p
        self.transports = [SimTransport(self, r, p) for r in range(p)]
        self.sends: dict[tuple[int, int, int], list | deque[list]] = {}  # unmatched, see post_send
        self.recvs: dict[tuple[int, int, int], list | deque[list]] = {}
        self.heap: list[tuple[float, float, int]] = []
        self.tiebreak = self.rng.random if self.rng is not None else count().__next__
        self.events: list[tuple[str, int, int, float, float, int]] | None = [] if timeline else None
        self.sent_msgs = [0] * p
        self.sent_bytes = [0] * p
        self.recv_msgs = [0] * p
        self.recv_bytes = [0] * p
        self.reduce_bytes = [0] * p
        self.reduce_calls = [0] * p
        self.copy_bytes = [0] * p

    # ----------------------------------------------------------------- messages
    def _bad_post(self, rank: int, kind: int, peer: Any, tag: Any) -> MessageError:
        what = "t.isend to" if kind == SEND else "t.irecv from"
        if not isinstance(tag, int) or tag < 0:
            return MessageError(f"rank {rank}: {what} rank {peer} with tag {tag!r}; tags are non-negative ints")
        return MessageError(f"rank {rank}: {what} rank {peer!r}, but ranks are 0..{self.p - 1}")

    def post_send(self, t: SimTransport, buf: Any, dest: int, tag: int) -> list:
        rank = t.rank
        if not 0 <= dest < self.p or tag < 0:
            raise self._bad_post(rank, SEND, dest, tag)
        if self.o:
            t.now += self.o
        req = [SEND, rank, dest, tag, buf, buf.nbytes, t.now, None, None, None, None]
        t.outstanding += 1
        if self.tracking:
            self._track(t, req)
        other = _pair_or_wait((rank, dest, tag), req, self.recvs, self.sends)
        if other is not None:
            self._match(req, other)
        return req

    def post_recv(self, t: SimTransport, buf: Any, source: int, tag: int) -> list:
        rank = t.rank
        if not 0 <= source < self.p or tag < 0:
            raise self._bad_post(rank, RECV, source, tag)
        req = [RECV, rank, source, tag, buf, buf.nbytes, t.now, None, None, None, None]
        t.outstanding += 1
        if self.tracking:
            self._track(t, req)
        other = _pair_or_wait((source, rank, tag), req, self.sends, self.recvs)
        if other is not None:
            self._match(other, req)
        return req

    def _match(self, s: list, r: list) -> None:
        """Time a matched message, move its data, and complete both requests."""
        nbytes = s[NBYTES]
        src = s[RANK]
        dst = r[RANK]
        if nbytes > r[NBYTES]:
            raise MessageError(
                f"rank {src} sent {nbytes} B to rank {dst} (tag {s[TAG]}) but the receive buffer holds only "
                f"{r[NBYTES]} B (MPI_ERR_TRUNCATE)"
            )
        start = s[TIME]
        posted = r[TIME]
        if nbytes > self.eager_limit and posted > start:
            start = posted  # rendezvous: a large message waits for its receive
        ports = self.ports
        if ports is not None and self.send_free[src] > start:
            start = self.send_free[src]
        begin, injected, arrival = self.transfer(src, dst, nbytes, start)
        if ports is not None:
            if ports == "one":
                # The send port is held until the message has arrived; the receive port serves its
                # messages one after another for as long (so p-1 senders to one rank take turns).
                self.send_free[src] = arrival
                held = arrival - start
                taken = self.recv_free[dst]
                if taken > start:
                    arrival = taken + held
                self.recv_free[dst] = arrival
            else:
                self.send_free[src] = injected if injected > begin + self.g else begin + self.g
        start = begin
        if self.jitter:
            arrival += self.rng.random() * self.jitter
        self.sent_msgs[src] += 1
        self.sent_bytes[src] += nbytes
        self.recv_msgs[dst] += 1
        self.recv_bytes[dst] += nbytes
        if self.events is not None:
            self.events.append((MSG, src, dst, start, arrival, nbytes))
        if self.tracking:
            if self.rng is not None and self.rng.random() < 0.5:
                s[PARTNER], r[PARTNER] = r, s  # copy as late as MPI allows
            else:
                self.payload.deliver(s[BUF], r[BUF])
        # complete the send, then the receive
        self._complete(s, arrival if self.sync_send else injected)
        self._complete(r, (arrival if arrival > posted else posted) + self.o)

    def _complete(self, req: list, when: float) -> None:
        """Mark a request done at ``when``; a step whose last request this was wakes its rank."""
        req[DONE] = when
        step = req[STEP]
        if step is not None:
            if when > step.ready:
                step.ready = when
            step.pending -= 1
            if not step.pending and step.yielded:
                t = step.transport
                heapq.heappush(self.heap, (step.ready if step.ready > t.now else t.now, self.tiebreak(), t.rank))

    # ------------------------------------------------------------ local work
    def reduce(self, t: SimTransport, op: ReduceOp, dst: Any, src: Any) -> None:
        """``t.reduce``: combine (or just count, without data), and charge gamma per byte."""
        rank = t.rank
        if self.tracking:
            self._check_local(t, "reduce", dst, src)
            self.payload.reduce(rank, op, dst, src)
        elif dst.size != src.size:
            raise _size_mismatch(rank, "reduce", dst, src)
        nbytes = src.nbytes
        self.reduce_bytes[rank] += nbytes
        self.reduce_calls[rank] += 1
        dt = curve_time(self.reduce_curve, nbytes) if self.reduce_curve else nbytes * self.gamma
        dt += self.call
        if dt:
            if self.events is not None:
                self.events.append((REDUCE, rank, -1, t.now, t.now + dt, nbytes))
            t.now += dt

    def copy(self, t: SimTransport, dst: Any, src: Any) -> None:
        """``t.copy``: move (or just count) the data, and charge delta per byte."""
        rank = t.rank
        if self.tracking:
            self._check_local(t, "copy", dst, src)
            self.payload.copy(rank, dst, src)
        elif dst.size != src.size:
            raise _size_mismatch(rank, "copy", dst, src)
        nbytes = src.nbytes
        self.copy_bytes[rank] += nbytes
        dt = curve_time(self.copy_curve, nbytes) if self.copy_curve else nbytes * self.delta
        dt += self.call
        if dt:
            if self.events is not None:
                self.events.append((COPY, rank, -1, t.now, t.now + dt, nbytes))
            t.now += dt

    # ----------------------------------------------------------- hazards
    def _track(self, t: SimTransport, req: list) -> None:
        active = t.active
        active.append(req)
        if req[NBYTES] == 0:
            return
        lo, hi = req[REGION] = self.payload.region(req[BUF])
        for other in active:
            reg = other[REGION]
            if reg is None or reg[1] <= lo or hi <= reg[0] or other is req:
                continue
            if req[KIND] == SEND and other[KIND] == SEND:
                continue  # sending the same data twice is fine
            raise HazardError(
                f"rank {t.rank}: posts {describe(req)} on a buffer that overlaps its pending {describe(other)}; "
                f"wait for that one first (MPI forbids touching a buffer while a message uses it)"
            )

    def _check_local(self, t: SimTransport, what: str, dst: Any, src: Any) -> None:
        if not t.active:
            return
        region = self.payload.region
        d_lo, d_hi = region(dst) if dst.size else (0, 0)
        s_lo, s_hi = region(src) if src.size else (0, 0)
        for other in t.active:
            reg = other[REGION]
            if reg is None:
                continue
            if d_lo < d_hi and reg[0] < d_hi and d_lo < reg[1]:
                raise HazardError(
                    f"rank {t.rank}: t.{what} writes a buffer while its {describe(other)} is in flight; "
                    f"yield the step that waits for it first"
                )
            if other[KIND] == RECV and s_lo < s_hi and reg[0] < s_hi and s_lo < reg[1]:
                raise HazardError(
                    f"rank {t.rank}: t.{what} reads a buffer that its {describe(other)} has not finished "
                    f"filling; yield the step that waits for it first"
                )

    def _retire(self, t: SimTransport, step: SimStep) -> None:
        t.outstanding -= len(step.requests)
        active = t.active
        deliver = self.payload.deliver
        for req in step.requests:
            active.remove(req)
            other = req[PARTNER]
            if other is not None:
                s, r = (req, other) if req[KIND] == SEND else (other, req)
                deliver(s[BUF], r[BUF])
                s[PARTNER] = r[PARTNER] = None

    # ------------------------------------------------------------------ run
    def run(self, algorithm: Callable[..., Iterator[Any]], buffers: list[Any], op: ReduceOp) -> SimResult:
        """Run ``algorithm(t, buffers[r], op)`` on every rank to completion; returns the result."""
        if len(buffers) != self.p:
            raise ValueError(f"need one buffer per rank: got {len(buffers)} for {self.p} ranks")
        wall, cpu = _time.perf_counter(), _time.process_time()
        transports = self.transports
        gens = []
        for r, t in enumerate(transports):
            try:
                gens.append(algorithm(t, buffers[r], op))
            except Exception as e:
                raise AlgorithmError(f"rank {r}: starting the algorithm raised {type(e).__name__}: {e}") from e
        heap = self.heap
        tiebreak = self.tiebreak
        for r in range(self.p):
            heap.append((0.0, tiebreak(), r))
        heapq.heapify(heap)
        heappop, heappush = heapq.heappop, heapq.heappush
        finish = [0.0] * self.p
        steps = 0
        tracking = self.tracking
        eager_continue = self.rng is None  # random mode always goes through the heap, for more orders
        while heap:
            now, _, r = heappop(heap)
            t = transports[r]
            if now > t.now:
                t.now = now
            gen = gens[r]
            while True:
                step = t.step
                if step is not None:
                    t.step = None
                    if tracking:
                        self._retire(t, step)
                    else:
                        t.outstanding -= len(step.requests)
                    step.requests = ()  # break the request <-> step cycle: refcounting frees both
                try:
                    step = next(gen)
                except StopIteration:
                    t.finished = True
                    finish[r] = t.now
                    if t.outstanding:
                        self._leftover(t)
                    break
                except SimulationError:
                    raise
                except Exception as e:
                    raise _algorithm_error(r, e) from e
                steps += 1
                if step.__class__ is not SimStep or step.transport is not t:
                    raise PortabilityError(
                        f"rank {r}: yielded {step!r}; an algorithm must yield steps made by its own transport "
                        f"(t.sendrecv, t.send, t.recv or t.wait)"
                    )
                step.yielded = True
                t.step = step
                if step.pending:
                    break  # asleep until _match completes the step's last request
                at = step.ready if step.ready > t.now else t.now
                if eager_continue and (not heap or heap[0][0] >= at):
                    t.now = at  # already complete and nobody is earlier: go on without the heap
                    continue
                heappush(heap, (at, tiebreak(), r))
                break
        unfinished = [t for t in transports if not t.finished]
        if unfinished:
            raise self._deadlock(unfinished)
        self._unmatched()
        result = SimResult.from_simulator(self, finish, steps, _time.perf_counter() - wall)
        result.cpu = _time.process_time() - cpu
        return result

    # ------------------------------------------------------------- reports
    def _leftover(self, t: SimTransport) -> None:
        if not t.active:
            raise MessageError(
                f"rank {t.rank} returned with {t.outstanding} request(s) it never waited for "
                f"(yield t.wait(...) on every request; the symbolic check names them)"
            )
        pending = ", ".join(describe(req) for req in t.active[:4])
        more = f" and {len(t.active) - 4} more" if len(t.active) > 4 else ""
        raise MessageError(
            f"rank {t.rank} returned with {len(t.active)} request(s) it never waited for: {pending}{more} "
            f"(yield t.wait(...) on every request)"
        )

    def _unmatched(self) -> None:
        for (src, dst, tag), q in self.sends.items():
            count = 1 if q.__class__ is list else len(q)
            raise MessageError(
                f"rank {src} sent {count} message(s) to rank {dst} with tag {tag} that rank {dst} never received"
            )
        for src, dst, tag in self.recvs:
            raise MessageError(f"rank {dst} posted a receive from rank {src}, tag {tag}, that was never sent")

    def _hint(self, req: list) -> str:
        peer, rank = req[PEER], req[RANK]
        if self.transports[peer].finished:
            return f" (rank {peer} has already returned)"
        if req[KIND] == RECV:
            tags = sorted(tag for (s, d, tag) in self.sends if s == peer and d == rank)
            if tags:
                return f" (rank {peer} has sent it tag(s) {tags[:5]} instead)"
        else:
            tags = sorted(tag for (s, d, tag) in self.recvs if s == rank and d == peer)
            if tags:
                return f" (rank {peer} expects tag(s) {tags[:5]} instead)"
        return ""

    def _deadlock(self, unfinished: list[SimTransport]) -> DeadlockError:
        waits: dict[int, list[str]] = {}
        graph: dict[int, list[int]] = {}
        for t in unfinished:
            pending = [req for req in t.step.requests if req[DONE] is None] if t.step else []
            waits[t.rank] = [f"{describe(req)}{self._hint(req)}" for req in pending]
            graph[t.rank] = [req[PEER] for req in pending]
        lines = []
        for rank, descs in list(waits.items())[:_BLOCKED_SHOWN]:
            lines.append(f"rank {rank} waits in " + "; and in ".join(descs))
        if len(waits) > _BLOCKED_SHOWN:
            lines.append(f"... and {len(waits) - _BLOCKED_SHOWN} more blocked ranks")
        cycle = _find_cycle(graph)
        if cycle:
            lines.append("wait cycle: " + " -> ".join(f"rank {r}" for r in cycle))
        done = self.p - len(unfinished)
        head = f"deadlock: {len(unfinished)} of {self.p} ranks blocked ({done} returned), none can progress"
        return DeadlockError(head + "\n  " + "\n  ".join(lines), waits)


def _size_mismatch(rank: int, what: str, dst: Any, src: Any) -> MessageError:
    return MessageError(f"rank {rank}: t.{what} needs buffers of equal size, got {dst.size} and {src.size} elements")


def _algorithm_error(rank: int, e: Exception) -> SimulationError:
    """An exception from algorithm code, classified: touching data directly is a portability bug."""
    text = str(e)
    if isinstance(e, (TypeError, ValueError)) and ("read-only" in text or "SymArray" in text):
        return PortabilityError(
            f"rank {rank}: the algorithm touched buffer data directly ({type(e).__name__}: {text}); "
            f"use t.reduce / t.copy (see collectives.transport)"
        )
    if isinstance(e, AttributeError):
        return PortabilityError(
            f"rank {rank}: the algorithm used something the transport interface does not offer "
            f"(AttributeError: {text}); see collectives.transport"
        )
    return AlgorithmError(f"rank {rank}: the algorithm raised {type(e).__name__}: {text}")


def _find_cycle(graph: dict[int, list[int]]) -> list[int] | None:
    """A cycle in the wait-for graph (rank -> ranks it waits on), as a closed list of ranks."""
    color: dict[int, int] = {}
    for root in graph:
        if root in color:
            continue
        stack = [(root, iter(graph[root]))]
        path = [root]
        color[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                color[node] = 2
                continue
            if nxt not in graph:
                continue
            if color.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in color:
                color[nxt] = 1
                stack.append((nxt, iter(graph[nxt])))
                path.append(nxt)
    return None


def _pair_or_wait(key: tuple, req: list, partners: dict, waiting: dict) -> list | None:
    """The oldest unmatched partner of ``req`` under ``key`` (removed), or None after queuing ``req``.

    Unmatched requests wait in a dict per (source, dest, tag): one request alone, or a deque of
    them in posting order when several are outstanding (MPI's non-overtaking order).
    """
    q = partners.get(key)
    if q is not None:
        if q.__class__ is list:
            del partners[key]
            return q
        other = q.popleft()
        if not q:
            del partners[key]
        return other
    q = waiting.get(key)
    if q is None:
        waiting[key] = req
    elif q.__class__ is list:
        waiting[key] = deque((q, req))
    else:
        q.append(req)
    return None
