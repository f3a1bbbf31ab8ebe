"""Record an algorithm's schedule once: every rank's sends, receives, waits and local work, in order.

With sizes-only buffers an algorithm's control flow cannot depend on data or on time (it sees
neither), so each rank's generator can run to its end on its own, without the others, and what
it posts can be written down: the schedule. :mod:`collectives.sim.replay` then times that
schedule under any cost model and topology with a compiled event loop, reproducing what the
generator-driven :class:`collectives.sim.scheduler.Simulator` computes, in a fraction of its time.

The recording transport writes four lists per rank, turned into int64 arrays as soon as the rank
is done, then concatenated over ranks:

* ``ops``: the transport calls and yields as codes (``ISEND``, ``SENDRECV``, ``WAIT k``,
  ``YIELD s``, ``YIELD_LAST``, ``REDUCE``, ...), ending with ``END``;
* ``reqs``: every request as (peer, tag, bytes), in posting order (send or receive follows from
  the op code);
* ``waits``: the requests of each explicit ``t.wait``, in order;
* ``local``: the bytes of each ``t.reduce``, and ``~bytes`` (negative) of each ``t.copy``.

Matching is static (:func:`_match`). Requests and steps get global ids (their position over all
ranks). Anything the schedule cannot express or the checks reject raises :class:`NotRecordable`
with the reason, and the caller runs the reference scheduler instead, which then reports the
algorithm's error in full (deadlocks, unmatched messages, truncation, a request waited for twice,
an exception in the algorithm).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from collectives.ops import ReduceOp
from collectives.sim.payload import SizesPayload
from collectives.transport import Transport

# Operation codes of a rank's stream. Every transport call charges the model's call_overhead
# first, as SimTransport does; the codes marked * consume the rank's next request(s) in order.
END, ISEND, IRECV, WAIT, YIELD, REDUCE, COPY, SENDRECV, SEND, RECV, YIELD_LAST = range(11)
# ISEND*, IRECV*: post;  WAIT k: a step over the next k entries of ``waits``;  YIELD s: wait in step s;
# YIELD_LAST: wait in the step the rank made last (what ``yield t.sendrecv(...)`` records);
# REDUCE, COPY: local work of the next ``local`` size;  SENDRECV**, SEND*, RECV*: post and make a step.
SEND_KIND, RECV_KIND = 0, 1


class NotRecordable(Exception):
    """The algorithm's run cannot be replayed from a recording (the reason says why)."""


class RecordingTransport(Transport):
    """Rank ``rank``'s transport while recording: calls are written down, nothing is timed or moved.

    Request ids are positions in ``reqs`` (three entries each: peer, tag, bytes; whether it is a
    send or a receive follows from the op code). Step ids count down from -1 over all ranks
    (step -1 - i is the i-th), so that yielding a request instead of a step is caught.
    """

    def __init__(
        self, rank: int, size: int, ops: list, reqs: list, waits: list, local: list, step: int, first_request: int
    ) -> None:
        self.rank, self.size = rank, size
        self._ops, self._reqs, self._waits, self._local = ops, reqs, waits, local
        self._next = step  # the id the next step gets
        self._first = first_request  # the id of this rank's first request (its lists start empty)
        self._ops_append, self._reqs_extend = ops.append, reqs.extend

    def isend(self, buf: Any, dest: int, tag: int) -> int:
        reqs = self._reqs
        q = self._first + len(reqs) // 3
        self._ops_append(ISEND)
        reqs.extend((dest, tag, buf.nbytes))
        return q

    def irecv(self, buf: Any, source: int, tag: int) -> int:
        reqs = self._reqs
        q = self._first + len(reqs) // 3
        self._ops_append(IRECV)
        reqs.extend((source, tag, buf.nbytes))
        return q

    def wait(self, *requests: int) -> int:
        self._ops.extend((WAIT, len(requests)))
        self._waits.extend(requests)
        s = self._next
        self._next = s - 1
        return s

    def sendrecv(self, sendbuf: Any, dest: int, recvbuf: Any, source: int, tag: int) -> int:
        self._ops_append(SENDRECV)
        self._reqs_extend((dest, tag, sendbuf.nbytes, source, tag, recvbuf.nbytes))
        s = self._next
        self._next = s - 1
        return s

    def send(self, buf: Any, dest: int, tag: int) -> int:
        self._ops_append(SEND)
        self._reqs_extend((dest, tag, buf.nbytes))
        s = self._next
        self._next = s - 1
        return s

    def recv(self, buf: Any, source: int, tag: int) -> int:
        self._ops_append(RECV)
        self._reqs_extend((source, tag, buf.nbytes))
        s = self._next
        self._next = s - 1
        return s

    def reduce(self, op: ReduceOp, inout: Any, incoming: Any) -> None:
        if inout.size != incoming.size:
            raise NotRecordable(f"rank {self.rank}: t.reduce on buffers of different sizes")
        self._ops_append(REDUCE)
        self._local.append(incoming.nbytes)

    def copy(self, dst: Any, src: Any) -> None:
        if dst.size != src.size:
            raise NotRecordable(f"rank {self.rank}: t.copy on buffers of different sizes")
        self._ops_append(COPY)
        self._local.append(~src.nbytes)  # copies as ~bytes (negative), reductions as bytes

    def scratch(self, n: int, dtype: Any) -> Any:
        return SizesPayload.buffer(int(n), dtype)

    def run(self, steps: Any) -> None:
        raise NotRecordable("the algorithm drives a transport itself (t.run)")


@dataclass
class Schedule:
    """Every rank's recorded operations as flat int64 arrays, requests matched; see the module docstring.

    ``*_base`` arrays have p + 1 entries: rank r's part of ``ops`` is ``ops[op_base[r]:op_base[r+1]]``,
    and so on. ``partner[q]`` is the request that request q matches (MPI's FIFO order per
    (source, destination, tag)).
    """

    p: int
    nbytes: int
    ops: np.ndarray
    op_base: np.ndarray
    req_kind: np.ndarray  # SEND_KIND / RECV_KIND
    req_rank: np.ndarray
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


def record(algorithm: Callable[..., Iterator[Any]], p: int, n: int, dtype: Any, op: ReduceOp) -> Schedule:
    """Run ``algorithm`` on every rank over sizes-only buffers of ``n`` elements and write its schedule down.

    Raises :class:`NotRecordable` when the run cannot be replayed exactly (see the module docstring).
    """
    # The recording allocates millions of small objects and frees them by reference counting;
    # the cycle collector's passes over them cost about a tenth of the recording, for nothing.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _record(algorithm, p, n, dtype, op)
    finally:
        if collecting:
            gc.enable()


def _record(algorithm: Callable[..., Iterator[Any]], p: int, n: int, dtype: Any, op: ReduceOp) -> Schedule:
    cpu = time.process_time()
    ops: list[int] = []
    reqs: list[int] = []
    waits: list[int] = []
    local: list[int] = []
    lists = (ops, reqs, waits, local)
    # Each rank's lists become arrays as soon as it is done, while they are in cache.
    chunks: tuple[list[np.ndarray], ...] = ([], [], [], [])
    nreq, step = 0, -1
    for r in range(p):
        t = RecordingTransport(r, p, ops, reqs, waits, local, step, nreq)
        ops_append = ops.append
        try:
            for got in algorithm(t, SizesPayload.buffer(n, dtype), op):
                if got == t._next + 1:
                    ops_append(YIELD_LAST)
                elif got.__class__ is int and t._next < got <= step:
                    ops_append(YIELD)
                    ops_append(-1 - got)
                else:
                    raise NotRecordable(f"rank {r} yielded {got!r}, not a step of its own transport")
        except NotRecordable:
            raise
        except Exception as e:  # the reference scheduler reports it with its context
            raise NotRecordable(f"rank {r}: the algorithm raised {type(e).__name__}: {e}") from e
        ops_append(END)
        step = t._next
        nreq += len(reqs) // 3
        for chunk, values, what in zip(chunks, lists, (None, "peers or tags", "waited requests", None)):
            chunk.append(_array(values, what))
            values.clear()
    schedule = _build(p, *chunks)
    schedule.nbytes = int(np.dtype(dtype).itemsize) * n
    schedule.record_cpu = time.process_time() - cpu
    return schedule


def _array(values: list, what: str | None) -> np.ndarray:
    """``values`` as int64, refusing anything that is not an integer (a float tag would be truncated);
    ``what`` None: values the recorder made itself (op codes, sizes), converted without checking."""
    if what is None:
        return np.fromiter(values, np.int64, len(values))
    out = np.array(values)
    if out.dtype.kind not in "iu" and out.size:
        raise NotRecordable(f"{what} that are not integers")
    return out.astype(np.int64, copy=False)


def _bases(chunks: list[np.ndarray], per: int = 1) -> np.ndarray:
    """Where each rank's part starts in the concatenation of ``chunks`` (p + 1 entries)."""
    return np.concatenate(([0], np.cumsum([c.size // per for c in chunks]))).astype(np.int64)


def _build(p: int, ops: list, reqs: list, waits: list, local: list) -> Schedule:
    """The schedule from each rank's arrays, every rule of a correct run checked, requests matched."""
    from collectives.sim.replay_loop import scan

    req = np.concatenate(reqs).reshape(-1, 3)
    peer, tag, size = req[:, 0], req[:, 1], np.ascontiguousarray(req[:, 2])
    req_base_a = _bases(reqs, 3)
    rank = np.repeat(np.arange(p, dtype=np.int64), np.diff(req_base_a))
    if peer.size and (peer.min() < 0 or peer.max() >= p or tag.min() < 0):
        raise NotRecordable("a message names a rank outside 0..p-1 or a negative tag")
    ops_a, waits_a = np.concatenate(ops), np.concatenate(waits)
    op_base_a, wait_base_a = _bases(ops), _bases(waits)
    if waits_a.size and (waits_a.min() < 0 or waits_a.max() >= peer.size):
        raise NotRecordable("t.wait got something other than a request")
    owner = np.repeat(np.arange(p, dtype=np.int64), np.diff(wait_base_a))
    if waits_a.size and np.any(rank[waits_a] != owner):
        raise NotRecordable("a rank waits for another rank's request")
    kind, step_base, req_step, waited, yields = scan(ops_a, op_base_a, req_base_a, wait_base_a, waits_a)
    _check_waits(req_step, waited, yields)
    return Schedule(
        p=p,
        nbytes=0,
        ops=ops_a,
        op_base=op_base_a,
        req_kind=kind,
        req_rank=rank,
        req_peer=np.ascontiguousarray(peer),
        req_bytes=size,
        req_base=req_base_a,
        partner=_match(kind, rank, peer, tag, size, p),
        waits=waits_a,
        wait_base=wait_base_a,
        step_base=step_base,
        local_bytes=np.concatenate(local),
        local_base=_bases(local),
        steps_yielded=int(yields[:-1].sum()),
    )


def _check_waits(req_step: np.ndarray, waited: np.ndarray, yields: np.ndarray) -> None:
    """Every request is waited for exactly once, by its own rank, in a step yielded exactly once.

    (A request of sendrecv/send/recv is waited for by the step the call makes; one of isend/irecv
    by the t.wait naming it.) Anything else is left to the reference scheduler to report.
    """
    if np.any(waited != 1):
        raise NotRecordable("a request is waited for twice or never")
    if yields[-1] or np.any(yields > 1) or (req_step.size and np.any(yields[req_step] != 1)):
        raise NotRecordable("a step is yielded twice, or a step with requests never")


def _match(kind, rank, peer, tag, size, p) -> np.ndarray:
    """``partner[q]``: the request q matches, in MPI's first-in first-out order per (source, dest, tag).

    All sends of one (source, dest, tag) come from one rank in its posting order, and all its
    receives from another, so the k-th send of each key meets the k-th receive: a stable sort by
    key lines them up.
    """
    sends = np.flatnonzero(kind == SEND_KIND)
    recvs = np.flatnonzero(kind == RECV_KIND)
    if sends.size != recvs.size:
        raise NotRecordable(f"{sends.size} messages sent but {recvs.size} receives posted")
    s_pair = rank[sends] * p + peer[sends]
    r_pair = peer[recvs] * p + rank[recvs]
    tags = int(tag.max()) + 1 if tag.size else 1
    if p * p * tags < 1 << 62:  # one int64 key: a stable sort, fast on the nearly sorted keys algorithms make
        s_key, r_key = s_pair * tags + tag[sends], r_pair * tags + tag[recvs]
        s_order, r_order = np.argsort(s_key, kind="stable"), np.argsort(r_key, kind="stable")
        lined_up = np.array_equal(s_key[s_order], r_key[r_order])
    else:
        s_order, r_order = np.lexsort((tag[sends], s_pair)), np.lexsort((tag[recvs], r_pair))
        lined_up = np.array_equal(s_pair[s_order], r_pair[r_order]) and np.array_equal(
            tag[sends][s_order], tag[recvs][r_order]
        )
    if not lined_up:
        raise NotRecordable("a message is never received, or a receive never sent")
    s_order, r_order = sends[s_order], recvs[r_order]
    if np.any(size[s_order] > size[r_order]):
        raise NotRecordable("a message is larger than its receive buffer")
    partner = np.empty(kind.size, dtype=np.int64)
    partner[s_order] = r_order
    partner[r_order] = s_order
    return partner
