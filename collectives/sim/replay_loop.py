"""The compiled event loop that times a recorded schedule: the reference scheduler's rules, on arrays.

:func:`replay` follows :class:`collectives.sim.scheduler.Simulator` step for step, in the same
order, so it produces the same floating-point numbers: ranks run in order of (virtual time,
insertion), a rank runs until its next yield, a step already complete continues without the heap
when nobody is earlier, messages are timed when both sides are posted (``Simulator._match``), on
private pair links (``PairwiseNetwork``) or routed links (``Network``), under the one-port, NIC or
multi-port rules. Where the reference adds, this adds the same numbers in the same order; every
value depending only on sizes (a message's transfer time, a reduction's) is computed once in
Python by the reference's own expressions and passed in.

Op codes and array layouts are :mod:`collectives.sim.record`'s.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# The op codes of collectives.sim.record (numba needs them as plain globals).
END, ISEND, IRECV, WAIT, YIELD, REDUCE, COPY, SENDRECV, SEND, RECV, YIELD_LAST = range(11)
PORTS_MULTI, PORTS_ONE, PORTS_NIC = 0, 1, 2
MSG_EVENT, REDUCE_EVENT, COPY_EVENT = 0, 1, 2
# ctr: counters shared by the helpers
HEAP_N, SEQ, EVENTS, FIFO_HEAD, FIFO_N = range(5)
# One record per request and per step, so that everything the loop reads about one sits in one cache
# line (separate arrays per field cost a cache miss each on large runs). ``time`` is when the request
# was posted until it completes, then when it completed (nothing reads the first after that).
# A send's size is its class (``size``): an index into the distinct sizes, whose bytes and link time
# the loop looks up in two small tables, so that a record is half a cache line.
REQUEST = np.dtype(
    [("time", "f8"), ("partner", "i4"), ("step", "i4"), ("rank", "i4"), ("link", "i4"), ("size", "i4"),
     ("send", "i1"), ("posted", "i1"), ("isdone", "i1")],
    align=True,
)  # fmt: skip
# A step belongs to the rank of its requests (a rank waits only for its own): 16 bytes, no rank field.
STEP = np.dtype([("ready", "f8"), ("pending", "i4"), ("yielded", "i1")], align=True)
# fp: float parameters
ALPHA, LATENCY, O, G, CALL, EAGER = range(6)
# ip: int parameters
PORTS, SYNC_SEND, ROUTED, TIMELINE = range(4)


@njit(nogil=True, cache=True, inline="always")
def _before(ta, ka, tb, kb):  # pragma: no cover - compiled
    """(ta, ka) < (tb, kb): heapq's tuple order."""
    return ta < tb or (ta == tb and ka < kb)


@njit(nogil=True, cache=True, inline="always")
def _push(heap, ctr, t, r, p):  # pragma: no cover - compiled
    """heapq.heappush of (t, next sequence number, r), as a row [time, seq * p + r].

    The queue is a sorted FIFO in front of a 4-ary heap (``heap``'s rows from ``2p + 4`` on hold
    the FIFO's ring): an entry no earlier than the FIFO's last joins the FIFO in O(1), others go to
    the heap, and a pop takes the smaller of the two fronts. Ranks that run in step (a ring's all
    finish a step at one time) thus mostly skip the heap. The key is exact in float64 below 2**53
    (checked); the pops come in heapq's order, since no two entries have the same (time, seq).
    Four children share a cache line.
    """
    seq = ctr[SEQ]
    ctr[SEQ] = seq + 1
    if seq >= (1 << 53) // p:
        raise RuntimeError("replay: too many events for exact keys")
    key = float(seq * p + r)
    base, cap = 2 * p + 4, p + 4
    nf = ctr[FIFO_N]
    if nf == 0 or heap[base + (ctr[FIFO_HEAD] + nf - 1) % cap, 0] <= t:  # its key is the largest yet
        if nf >= cap:
            raise RuntimeError("replay: event queue overflow (a rank queued twice)")
        row = base + (ctr[FIFO_HEAD] + nf) % cap
        heap[row, 0] = t
        heap[row, 1] = key
        ctr[FIFO_N] = nf + 1
        return
    i = ctr[HEAP_N]
    if i >= base:
        raise RuntimeError("replay: event heap overflow (a rank queued twice)")
    ctr[HEAP_N] = i + 1
    while i > 0:  # move the hole up to where (t, key) belongs
        parent = (i - 1) >> 2
        if _before(heap[parent, 0], heap[parent, 1], t, key):
            break
        heap[i, 0] = heap[parent, 0]
        heap[i, 1] = heap[parent, 1]
        i = parent
    heap[i, 0] = t
    heap[i, 1] = key


@njit(nogil=True, cache=True, inline="always")
def _earliest(heap, ctr, p):  # pragma: no cover - compiled
    """The time of the entry :func:`_pop` would return; infinity when nothing is queued."""
    t = np.inf
    if ctr[FIFO_N]:
        t = heap[2 * p + 4 + ctr[FIFO_HEAD], 0]
    if ctr[HEAP_N] and heap[0, 0] < t:
        t = heap[0, 0]
    return t


@njit(nogil=True, cache=True, inline="always")
def _pop(heap, ctr, p):  # pragma: no cover - compiled
    """heapq.heappop: (time, rank) of the entry with the smallest (time, sequence)."""
    nf = ctr[FIFO_N]
    if nf:
        h = 2 * p + 4 + ctr[FIFO_HEAD]
        if ctr[HEAP_N] == 0 or _before(heap[h, 0], heap[h, 1], heap[0, 0], heap[0, 1]):
            ctr[FIFO_HEAD] = (ctr[FIFO_HEAD] + 1) % (p + 4)
            ctr[FIFO_N] = nf - 1
            return heap[h, 0], int(heap[h, 1]) % p
    t = heap[0, 0]
    r = int(heap[0, 1]) % p
    n = ctr[HEAP_N] - 1
    ctr[HEAP_N] = n
    lt, lk = heap[n, 0], heap[n, 1]  # the last entry, sifted down from the root
    i = 0
    while True:
        first = 4 * i + 1
        if first >= n:
            break
        c = first
        for j in range(first + 1, min(first + 4, n)):
            if _before(heap[j, 0], heap[j, 1], heap[c, 0], heap[c, 1]):
                c = j
        if _before(lt, lk, heap[c, 0], heap[c, 1]):
            break
        heap[i, 0] = heap[c, 0]
        heap[i, 1] = heap[c, 1]
        i = c
    heap[i, 0] = lt
    heap[i, 1] = lk
    return t, r


@njit(nogil=True, cache=True, inline="always")
def _complete(q, when, req, st, now, heap, ctr, p):  # pragma: no cover - compiled
    """Simulator._complete: request q is done at ``when``; a step whose last request it was wakes its rank."""
    req[q].time = when
    req[q].isdone = 1
    s = req[q].step
    if s >= 0:
        if when > st[s].ready:
            st[s].ready = when
        st[s].pending -= 1
        if st[s].pending == 0 and st[s].yielded:
            rk = req[q].rank
            _push(heap, ctr, st[s].ready if st[s].ready > now[rk] else now[rk], rk, p)


@njit(nogil=True, cache=True, inline="always")
def _transfer(
    src,
    dst,
    link,
    x,
    nbytes,
    start,
    fp,
    routed,
    route_ptr,
    route_links,
    route_lat,
    route_slow,
    link_pb,
    link_free,
    link_msgs,
    link_bytes,
    link_busy,
):  # pragma: no cover - compiled
    """Network.transfer / PairwiseNetwork.transfer: (begin, injected, arrival)."""
    if not routed:
        if src == dst:
            return start, start, start + fp[ALPHA]
        if link_free[link] > start:
            start = link_free[link]
        end = start + x
        link_free[link] = end
        link_msgs[link] += 1
        link_bytes[link] += nbytes
        link_busy[link] += x
        return start, end, end + fp[LATENCY]
    lo, hi = route_ptr[link], route_ptr[link + 1]  # ``link`` is the route's number here
    latency = route_lat[link]
    if lo == hi:
        return start, start, start + latency
    first = link_free[route_links[lo]]
    begin = first if first > start else start
    done = start + nbytes * route_slow[link]
    injected = 0.0
    for j in range(lo, hi):
        i = route_links[j]
        x = nbytes * link_pb[i]
        served = (link_free[i] if link_free[i] > start else start) + x
        link_free[i] = served
        if served > done:
            done = served
        if not injected:
            injected = served
        link_msgs[i] += 1
        link_bytes[i] += nbytes
        link_busy[i] += x
    return begin, injected, done + latency


@njit(nogil=True, cache=True, inline="always")
def _make_step(s, listed, lo, hi, req, st):  # pragma: no cover - compiled
    """SimStep.__init__: step s over requests ``listed[lo:hi]``; counts those pending and takes the
    latest completion of the others."""
    pending = 0
    ready = 0.0
    for j in range(lo, hi):
        q = listed[j]
        req[q].step = s
        if not req[q].isdone:
            pending += 1
        elif req[q].time > ready:
            ready = req[q].time
    st[s].pending = pending
    st[s].ready = ready


@njit(nogil=True, cache=True)
def round_major(base):  # pragma: no cover - compiled
    """New ids for items numbered rank by rank (rank r's are ``base[r]:base[r+1]``), in the order of
    (position within its rank, rank): each rank's k-th request (or step) next to the other ranks'
    k-th. Ranks run roughly in step, so the loop then walks its records nearly in order instead of
    jumping between p places (a cache miss each); where a record lives changes, not what is computed.
    """
    p = base.size - 1
    longest = 0
    for r in range(p):
        longest = max(longest, base[r + 1] - base[r])
    start = np.zeros(longest + 1, np.int64)  # where the k-th items begin: a counting sort on k
    for r in range(p):
        start[1 : base[r + 1] - base[r] + 1] += 1
    for k in range(longest):
        start[k + 1] += start[k]
    new_id = np.empty(base[p], np.int32)  # callers check that ids fit
    for r in range(p):
        for k in range(base[r + 1] - base[r]):
            new_id[base[r] + k] = start[k]
            start[k] += 1
    return new_id


@njit(nogil=True, cache=True)
def replay(
    ops,
    op_base,
    req_kind,
    req_base,
    partner,
    waits,
    wait_base,
    step_base,
    local_size,
    local_dt,
    local_base,
    msg_link,
    msg_size,
    size_bytes,
    size_x,
    route_ptr,
    route_links,
    route_lat,
    route_slow,
    link_pb,
    nlinks,
    fp,
    ip,
    max_events,
):  # pragma: no cover - compiled
    """Time the schedule; returns (status, finish, steps, link_msgs, link_bytes, link_busy, events...).

    Message m (the m-th send, in posting order) has ``msg_size[m]``, an index into ``size_bytes`` and
    ``size_x`` (its time on a pair link), and ``msg_link[m]``; local operation i takes
    ``local_dt[local_size[i]]``.

    status 0: every rank returned; 1: some ranks are blocked (a deadlock, which the reference
    scheduler then reports in full).
    """
    p = op_base.size - 1
    if req_base[p] >= 1 << 31 or step_base[p] >= 1 << 31:
        raise RuntimeError("replay: more than 2**31 requests or steps")
    # Request q (numbered rank by rank) lives in req[req_id[q]], step s in st[step_id[s]].
    # (Filling the records rank by rank, scattered, measured faster than in their own order.)
    req_id = round_major(req_base)
    step_id = round_major(step_base)
    # Allocated here rather than by numpy, which asks the kernel for huge pages for big arrays: on a
    # fragmented machine their first touch (compaction) cost more system time than the loop itself.
    req = np.empty(req_base[p], REQUEST)
    st = np.empty(step_base[p], STEP)
    m = 0  # messages so far: msg_size and msg_link are per message (send), in posting order
    for r in range(p):
        for q in range(req_base[r], req_base[r + 1]):
            i = req_id[q]
            req[i].time = 0.0
            req[i].partner = req_id[partner[q]]
            req[i].step = -1
            req[i].rank = r
            req[i].posted = 0
            req[i].isdone = 0
            if req_kind[q] == 0:
                req[i].send = 1
                req[i].size = msg_size[m]
                req[i].link = msg_link[m]
                m += 1
            else:
                req[i].send = 0
                req[i].size = -1
                req[i].link = -1
        for s in range(step_base[r], step_base[r + 1]):
            i = step_id[s]
            st[i].ready = 0.0
            st[i].pending = 0
            st[i].yielded = 0
    wait_id = np.empty(waits.size, np.int32)
    for j in range(waits.size):
        wait_id[j] = req_id[waits[j]]
    now = np.zeros(p)
    finish = np.zeros(p)
    finished = np.zeros(p, np.bool_)
    pc = op_base[:-1].copy()
    rq = req_base[:-1].copy()
    wl = wait_base[:-1].copy()
    sc = step_base[:-1].copy()
    lc = local_base[:-1].copy()
    send_free = np.zeros(p)
    recv_free = np.zeros(p)
    link_free = np.zeros(nlinks)
    link_msgs = np.zeros(nlinks, np.int64)
    link_bytes = np.zeros(nlinks, np.int64)
    link_busy = np.zeros(nlinks)
    ev_kind = np.zeros(max_events, np.int64)
    ev_a = np.zeros(max_events, np.int64)
    ev_b = np.zeros(max_events, np.int64)
    ev_t0 = np.zeros(max_events)
    ev_t1 = np.zeros(max_events)
    ev_n = np.zeros(max_events, np.int64)
    # At most one entry per rank is ever queued: a heap of 2p + 4 rows (twice that, for safety), then
    # the FIFO's ring of p + 4 (see _push).
    heap = np.zeros((3 * p + 8, 2))
    ctr = np.zeros(5, np.int64)
    o, g, call, eager = fp[O], fp[G], fp[CALL], fp[EAGER]
    ports, sync_send, routed, timeline = ip[PORTS], ip[SYNC_SEND], ip[ROUTED], ip[TIMELINE]
    for r in range(p):
        _push(heap, ctr, 0.0, r, p)
    steps = 0
    while ctr[HEAP_N] + ctr[FIFO_N] > 0:
        t_pop, r = _pop(heap, ctr, p)
        if t_pop > now[r]:
            now[r] = t_pop
        while True:
            code = ops[pc[r]]
            pc[r] += 1
            if code == YIELD_LAST or code == YIELD:
                if code == YIELD_LAST:
                    s = step_id[sc[r] - 1]
                else:
                    s = step_id[ops[pc[r]]]
                    pc[r] += 1
                steps += 1
                st[s].yielded = 1
                if st[s].pending:
                    break  # asleep until _complete finishes the step's last request
                at = st[s].ready if st[s].ready > now[r] else now[r]
                if _earliest(heap, ctr, p) >= at:
                    now[r] = at  # already complete and nobody is earlier: go on without the heap
                    continue
                _push(heap, ctr, at, r, p)
                break
            if code == END:
                finished[r] = True
                finish[r] = now[r]
                break
            if code == REDUCE or code == COPY:
                i = lc[r]
                lc[r] += 1
                dt = local_dt[local_size[i]]
                if dt:
                    if timeline:
                        e = ctr[EVENTS]
                        ctr[EVENTS] = e + 1
                        ev_kind[e] = REDUCE_EVENT if code == REDUCE else COPY_EVENT
                        ev_a[e] = r
                        ev_b[e] = -1
                        ev_t0[e] = now[r]
                        ev_t1[e] = now[r] + dt
                        ev_n[e] = -1 - i  # the size is looked up afterwards
                    now[r] += dt
                continue
            now[r] += call
            if code == WAIT:
                k = ops[pc[r]]
                pc[r] += 1
                first = wl[r]
                wl[r] += k
                _make_step(step_id[sc[r]], wait_id, first, first + k, req, st)
                sc[r] += 1
                continue
            # ISEND, IRECV, SENDRECV, SEND, RECV: post one or two requests
            nposts = 2 if code == SENDRECV else 1
            q0 = rq[r]
            rq[r] += nposts
            for j in range(q0, q0 + nposts):
                q = req_id[j]
                is_send = req[q].send
                if is_send:
                    now[r] += o  # post_send charges the sender's overhead o
                req[q].time = now[r]
                req[q].posted = 1
                other = req[q].partner
                if req[other].posted:
                    s_req, r_req = (q, other) if is_send else (other, q)
                    # --- Simulator._match ---
                    size = req[s_req].size
                    nbytes = size_bytes[size]
                    src, dst = req[s_req].rank, req[r_req].rank
                    start = req[s_req].time
                    posted_at = req[r_req].time
                    if nbytes > eager and posted_at > start:
                        start = posted_at  # rendezvous: a large message waits for its receive
                    if ports != PORTS_MULTI and send_free[src] > start:
                        start = send_free[src]
                    begin, injected, arrival = _transfer(
                        src,
                        dst,
                        req[s_req].link,
                        size_x[size],
                        nbytes,
                        start,
                        fp,
                        routed,
                        route_ptr,
                        route_links,
                        route_lat,
                        route_slow,
                        link_pb,
                        link_free,
                        link_msgs,
                        link_bytes,
                        link_busy,
                    )
                    if ports == PORTS_ONE:
                        send_free[src] = arrival
                        held = arrival - start
                        taken = recv_free[dst]
                        if taken > start:
                            arrival = taken + held
                        recv_free[dst] = arrival
                    elif ports == PORTS_NIC:
                        send_free[src] = injected if injected > begin + g else begin + g
                    if timeline:
                        e = ctr[EVENTS]
                        ctr[EVENTS] = e + 1
                        ev_kind[e] = MSG_EVENT
                        ev_a[e] = src
                        ev_b[e] = dst
                        ev_t0[e] = begin
                        ev_t1[e] = arrival
                        ev_n[e] = nbytes
                    _complete(s_req, arrival if sync_send else injected, req, st, now, heap, ctr, p)
                    _complete(r_req, (arrival if arrival > posted_at else posted_at) + o, req, st, now, heap, ctr, p)
            if code != ISEND and code != IRECV:
                _make_step(step_id[sc[r]], req_id, q0, q0 + nposts, req, st)
                sc[r] += 1
    status = 0
    for r in range(p):
        if not finished[r]:
            status = 1
    n = ctr[EVENTS]
    return (
        status,
        finish,
        steps,
        link_msgs,
        link_bytes,
        link_busy,
        ev_kind[:n],
        ev_a[:n],
        ev_b[:n],
        ev_t0[:n],
        ev_t1[:n],
        ev_n[:n],
    )
