"""Record an algorithm's schedule once: every rank's sends, receives, waits and local work, in order.

With sizes-only buffers an algorithm's control flow cannot depend on data or on time (it sees
neither), so each rank's generator can run to its end on its own, without the others, and what
it posts can be written down: the schedule. :mod:`collectives.sim.replay` then times that
schedule under any cost model and topology with a compiled event loop, reproducing what the
generator-driven :class:`collectives.sim.scheduler.Simulator` computes, in a fraction of its time.

Recording is the one part that runs the algorithm's Python, once per rank, so it is kept to the
least Python per call: the transport appends each call to a flat list of integers in one
``extend`` (the tape, :mod:`collectives.sim.tape`), the generator is driven by a C loop that
appends what it yields, and the rank's tape becomes an int64 array (packed by ``struct``, which
also refuses anything that is not an integer: a float tag, a yielded ``None``). A compiled pass then
reads it, while it is in cache, into the schedule's arrays, checking every handle.

Matching is static (:func:`_match`). Requests and steps get global ids (their position over all
ranks). Anything the schedule cannot express or the checks reject raises :class:`NotRecordable`
with the reason, and the caller runs the reference scheduler instead, which then reports the
algorithm's error in full (deadlocks, unmatched messages, truncation, a request waited for twice,
an exception in the algorithm).
"""

from __future__ import annotations

import gc
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from collectives.ops import ReduceOp
from collectives.sim import tape as T
from collectives.sim.payload import SizesPayload
from collectives.sim.tape import T_COPY, T_IRECV, T_ISEND, T_RECV, T_REDUCE, T_SEND, T_SENDRECV, T_WAIT
from collectives.transport import Transport

# The op codes of a Schedule's ``ops`` (see collectives.sim.tape and replay_loop). Every transport
# call charges the model's call_overhead first, as SimTransport does; the codes marked * consume
# the rank's next request(s) in order.
END, ISEND, IRECV, WAIT, YIELD, REDUCE, COPY, SENDRECV, SEND, RECV, YIELD_LAST = range(11)
# ISEND*, IRECV*: post;  WAIT k: a step over the next k entries of ``waits``;  YIELD s: wait in step s;
# YIELD_LAST: wait in the step the rank made last (what ``yield t.sendrecv(...)`` records);
# REDUCE, COPY: local work of the next ``local`` size;  SENDRECV**, SEND*, RECV*: post and make a step.
SEND_KIND, RECV_KIND = 0, 1
_BAD = {
    T.BAD_ENTRY: "yielded something that is not a step of its own transport",
    T.BAD_YIELD: "yielded a step that is not one its own transport made",
    T.BAD_WAIT: "passed t.wait something other than a request it posted",
    T.BAD_PEER: "named a rank outside 0..p-1 or a negative tag",
    T.BAD_WAITED: "a request is waited for twice or never",
    T.BAD_YIELDED: "a step is yielded twice, or a step with requests never",
}


class NotRecordable(Exception):
    """The algorithm's run cannot be replayed from a recording (the reason says why)."""


class RecordingTransport(Transport):
    """Rank ``rank``'s transport while recording: each call is written on the tape, nothing is timed or moved.

    Handles are plain integers: requests count up from ``request`` (isend/irecv calls over all
    ranks), steps count down from ``step`` (-1 is the first step of all), as the tape expects.
    """

    __slots__ = ("_extend", "_request", "_step", "rank", "size")

    def __init__(self, rank: int, size: int, tape: list, request: int, step: int) -> None:
        self.rank, self.size = rank, size
        self._extend = tape.extend
        self._request, self._step = request, step

    def isend(self, buf: Any, dest: int, tag: int) -> int:
        q = self._request
        self._request = q + 1
        self._extend((T_ISEND, dest, tag, buf.nbytes))
        return q

    def irecv(self, buf: Any, source: int, tag: int) -> int:
        q = self._request
        self._request = q + 1
        self._extend((T_IRECV, source, tag, buf.nbytes))
        return q

    def wait(self, *requests: int) -> int:
        self._extend((T_WAIT, len(requests), *requests))
        s = self._step
        self._step = s - 1
        return s

    def sendrecv(self, sendbuf: Any, dest: int, recvbuf: Any, source: int, tag: int) -> int:
        self._extend((T_SENDRECV, dest, source, tag, sendbuf.nbytes, recvbuf.nbytes))
        s = self._step
        self._step = s - 1
        return s

    def send(self, buf: Any, dest: int, tag: int) -> int:
        self._extend((T_SEND, dest, tag, buf.nbytes))
        s = self._step
        self._step = s - 1
        return s

    def recv(self, buf: Any, source: int, tag: int) -> int:
        self._extend((T_RECV, source, tag, buf.nbytes))
        s = self._step
        self._step = s - 1
        return s

    def reduce(self, op: ReduceOp, inout: Any, incoming: Any) -> None:
        if inout.size != incoming.size:
            raise NotRecordable(f"rank {self.rank}: t.reduce on buffers of different sizes")
        self._extend((T_REDUCE, incoming.nbytes))

    def copy(self, dst: Any, src: Any) -> None:
        if dst.size != src.size:
            raise NotRecordable(f"rank {self.rank}: t.copy on buffers of different sizes")
        self._extend((T_COPY, src.nbytes))

    def scratch(self, n: int, dtype: Any) -> Any:
        return SizesPayload.buffer(int(n), dtype)

    def run(self, steps: Any) -> None:
        raise NotRecordable("the algorithm drives a transport itself (t.run)")


@dataclass
class Schedule:
    """Every rank's recorded operations as flat integer arrays, requests matched; see the module docstring.

    ``*_base`` arrays have p + 1 entries: rank r's part of ``ops`` is ``ops[op_base[r]:op_base[r+1]]``,
    and so on. ``partner[q]`` is the request that request q matches (MPI's FIFO order per
    (source, destination, tag)).
    """

    p: int
    nbytes: int
    ops: np.ndarray
    op_base: np.ndarray
    req_kind: np.ndarray  # SEND_KIND / RECV_KIND
    req_peer: np.ndarray
    req_bytes: np.ndarray
    req_base: np.ndarray
    partner: np.ndarray
    waits: np.ndarray
    wait_base: np.ndarray
    step_base: np.ndarray
    local_bytes: np.ndarray
    local_base: np.ndarray
    steps_yielded: int
    record_cpu: float = 0.0  # CPU seconds the recording took

    @property
    def messages(self) -> int:
        return int(np.count_nonzero(self.req_kind == SEND_KIND))


_pages_lock = threading.Lock()
_pages_users = [0, None]  # blocks inside small_pages now, numpy's setting before the first


@contextmanager
def small_pages() -> Iterator[None]:
    """Within the block numpy does not ask the kernel for transparent huge pages for its big arrays.

    The recording and the replay fill a few hundred MB of fresh arrays once each. Huge pages make
    the kernel compact memory on first touch: on a busy virtual machine that measured 0.3-0.6 s of
    system time per 1024-rank ring, more than the replay loop itself, against about 0.1 s with
    ordinary pages. numpy's own switch is process-wide: the first block in switches it off and the
    last one out restores it, so simulations in several threads leave it as they found it (a
    no-op where numpy has no such switch).
    """
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    switch = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if switch is None:
        yield
        return
    with _pages_lock:
        if _pages_users[0] == 0:
            _pages_users[1] = switch(False)
        _pages_users[0] += 1
    try:
        yield
    finally:
        with _pages_lock:
            _pages_users[0] -= 1
            if _pages_users[0] == 0:
                switch(_pages_users[1])


def record(algorithm: Callable[..., Iterator[Any]], p: int, n: int, dtype: Any, op: ReduceOp) -> Schedule:
    """Run ``algorithm`` on every rank over sizes-only buffers of ``n`` elements and write its schedule down.

    Raises :class:`NotRecordable` when the run cannot be replayed exactly (see the module docstring).
    """
    # The recording allocates millions of small objects and frees them by reference counting;
    # the cycle collector's passes over them cost about a tenth of the recording, for nothing.
    collecting = gc.isenabled()
    gc.disable()
    try:
        with small_pages():
            return _record(algorithm, p, n, dtype, op)
    finally:
        if collecting:
            gc.enable()


def _record(algorithm: Callable[..., Iterator[Any]], p: int, n: int, dtype: Any, op: ReduceOp) -> Schedule:
    cpu = time.process_time()
    tape: list[int] = []  # the rank being recorded
    append = tape.append
    out = _Growing(p)
    request, step = 0, -1
    for r in range(p):
        t = RecordingTransport(r, p, tape, request, step)
        try:
            # The C loop of deque(map(...)) drives the generator: no Python of ours between its steps.
            deque(map(append, algorithm(t, SizesPayload.buffer(n, dtype), op)), 0)
        except NotRecordable:
            raise
        except Exception as e:  # the reference scheduler reports it with its context
            raise NotRecordable(f"rank {r}: the algorithm raised {type(e).__name__}: {e}") from e
        try:
            ints = _int64s(len(tape)).pack(*tape)  # refuses anything that is not an integer
        except struct.error as e:
            raise NotRecordable(f"rank {r} passed or yielded something that is not an integer ({e})") from e
        tape.clear()
        out.append(r, np.frombuffer(ints, np.int64), -1 - step, request)
        request, step = t._request, t._step
    schedule = out.schedule()
    schedule.nbytes = int(np.dtype(dtype).itemsize) * n
    schedule.record_cpu = time.process_time() - cpu
    return schedule


@lru_cache(maxsize=256)
def _int64s(n: int) -> struct.Struct:
    """Packs n Python integers as native int64: twice as fast as ``array('q').fromlist`` (which parses
    a format per item), and the conversion is a tenth of the recording."""
    return struct.Struct(f"={n}q")


class _Growing:
    """The schedule's arrays while ranks are parsed into them one by one (each rank's tape is read
    while it is in cache, and no tape of all ranks is ever held), grown when a rank does not fit."""

    def __init__(self, p: int) -> None:
        self.p = p
        # ops, requests (kind, peer, tag, bytes), waited requests, local operations
        self.ops, self.kind, self.peer = np.empty(0, np.int32), np.empty(0, np.int8), np.empty(0, np.int32)
        self.tag, self.nbytes = np.empty(0, np.int64), np.empty(0, np.int64)
        self.waits, self.local = np.empty(0, np.int32), np.empty(0, np.int64)
        self.fill = np.zeros(4, np.int64)  # entries written: ops, requests, waits, local (tape.F_*)
        self.bases: list[list[int]] = [[0] for _ in range(5)]  # per rank: ops, requests, waits, local, steps
        self.yielded = 0

    def append(self, r: int, tape: np.ndarray, first_step: int, first_handle: int) -> None:
        """Parse rank r's tape: its steps are global steps ``first_step ..``, its request handles
        ``first_handle ..``."""
        arrays = (self.ops, self.kind, self.peer, self.tag, self.nbytes, self.waits, self.local)
        status, counts = T.parse_rank(tape, self.p, first_step, first_handle, *arrays, self.fill)
        if status == T.NEED_ROOM:
            self._grow(r, counts)
            arrays = (self.ops, self.kind, self.peer, self.tag, self.nbytes, self.waits, self.local)
            status, counts = T.parse_rank(tape, self.p, first_step, first_handle, *arrays, self.fill)
        if status != T.OK:
            raise NotRecordable(f"rank {r} {_BAD[status]}")
        for base, value in zip(self.bases, (*self.fill.tolist(), self.bases[4][-1] + int(counts[4]))):
            base.append(value)
        self.yielded += int(counts[4])  # every step is yielded exactly once (checked)

    def _grow(self, r: int, counts: np.ndarray) -> None:
        """Room for rank r and, at the ranks' average so far, for the ranks after it."""
        need = self.fill + counts[:4]
        if need[1] >= 1 << 31 or self.bases[4][-1] + counts[4] >= 1 << 31:
            raise NotRecordable("more than 2**31 requests or steps")
        room = np.maximum(need, need * self.p // (r + 1) + need // 16 + 16)  # a little more: ranks differ
        for name, k in (("ops", 0), ("kind", 1), ("peer", 1), ("tag", 1), ("nbytes", 1), ("waits", 2), ("local", 3)):
            old = getattr(self, name)
            if old.size < need[k]:
                new = np.empty(int(room[k]), old.dtype)
                new[: self.fill[k]] = old[: self.fill[k]]
                setattr(self, name, new)

    def schedule(self) -> Schedule:
        """The arrays cut to size, requests matched."""
        o, q, w, loc = self.fill.tolist()
        op_base, req_base, wait_base, local_base, step_base = (np.array(b, np.int64) for b in self.bases)
        kind, peer, nbytes = self.kind[:q], self.peer[:q], self.nbytes[:q]
        return Schedule(
            p=self.p,
            nbytes=0,
            ops=self.ops[:o],
            op_base=op_base,
            req_kind=kind,
            req_peer=peer,
            req_bytes=nbytes,
            req_base=req_base,
            partner=_match(kind, req_base, peer, self.tag[:q], nbytes, self.p),
            waits=self.waits[:w],
            wait_base=wait_base,
            step_base=step_base,
            local_bytes=self.local[:loc],
            local_base=local_base,
            steps_yielded=self.yielded,
        )


def _match(kind, req_base, peer, tag, size, p) -> np.ndarray:
    """``partner[q]``: the request q matches, in MPI's first-in first-out order per (source, dest, tag).

    All sends of one (source, dest, tag) come from one rank in its posting order, and all its
    receives from another, so the k-th send of each key meets the k-th receive: a stable sort by
    key lines them up (numpy's, fast on the nearly sorted keys algorithms make).
    """
    nsend = int(np.count_nonzero(kind == SEND_KIND))
    if 2 * nsend != kind.size:
        raise NotRecordable(f"{nsend} messages sent but {kind.size - nsend} receives posted")
    tags = int(tag.max()) + 1 if tag.size else 1
    if p * p * tags < 1 << 62:  # one int64 key
        sends, s_key, recvs, r_key = T.match_keys(kind, req_base, peer, tag, p, tags)
    else:  # number the distinct (source, destination, tag) instead
        sends, recvs = np.flatnonzero(kind == SEND_KIND), np.flatnonzero(kind == RECV_KIND)
        rank = np.repeat(np.arange(p, dtype=np.int64), np.diff(req_base))
        src = np.where(kind == SEND_KIND, rank, peer).astype(np.int64)
        dst = np.where(kind == SEND_KIND, peer, rank).astype(np.int64)
        key = np.unique(np.stack((src * p + dst, tag)), axis=1, return_inverse=True)[1].reshape(-1)
        s_key, r_key = key[sends], key[recvs]
    s_order, r_order = np.argsort(s_key, kind="stable"), np.argsort(r_key, kind="stable")
    status, partner = T.pair_up(sends, s_key, s_order, recvs, r_key, r_order, size)
    if status == 1:
        raise NotRecordable("a message is never received, or a receive never sent")
    if status == 2:
        raise NotRecordable("a message is larger than its receive buffer")
    return partner
