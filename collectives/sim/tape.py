"""The recording's tape, and the compiled pass that reads it into a schedule's arrays.

While recording (:mod:`collectives.sim.record`) each rank writes one flat list of integers, as
cheaply as Python allows: a transport call appends its code and arguments in one ``extend``, and
whatever the algorithm yields is appended as it is, by a C-level loop (``deque(map(append,
generator), 0)``), with no Python code of ours between two steps of the algorithm. A rank's tape:

=====================================  ==========================================================
entry                                  written by
=====================================  ==========================================================
``ISEND dest tag bytes``               ``t.isend`` (returns the next request handle, 0, 1, 2, ...)
``IRECV source tag bytes``             ``t.irecv`` (idem)
``WAIT k h1 .. hk``                    ``t.wait(h1, .., hk)`` (returns the next step handle)
``SENDRECV dest source tag sb rb``     ``t.sendrecv`` (a step over its two requests)
``SEND dest tag bytes``                ``t.send`` (a step over its request)
``RECV source tag bytes``              ``t.recv`` (idem)
``REDUCE bytes``, ``COPY bytes``       ``t.reduce``, ``t.copy``
a negative number ``-1 - s``           the algorithm yielded step handle ``-1 - s``: global step s
=====================================  ==========================================================

Request handles count isend/irecv calls over all ranks; step handles count down from -1 over all
ranks, so a yielded value is told from a code by its sign and range. The codes are huge (2**60 +
k), so nothing an algorithm yields by mistake (a request handle, a small number) reads as one.

:func:`parse` turns the tapes into the arrays of :class:`collectives.sim.record.Schedule` (the op
stream the replay loop walks, requests, waits, local work, steps) and checks every handle: a rank
may wait only for its own posted requests and yield only steps it made. Anything else is reported
by a status code (``BAD_*``) and the rank; the caller then falls back to the reference scheduler.
"""

from __future__ import annotations

import numpy as np
from numba import njit

TAPE_BASE = 1 << 60
T_ISEND, T_IRECV, T_WAIT, T_SENDRECV, T_SEND, T_RECV, T_REDUCE, T_COPY = (TAPE_BASE + k for k in range(8))
# The replay loop's op codes (collectives.sim.replay_loop's, repeated: numba needs plain globals).
END, ISEND, IRECV, WAIT, YIELD, REDUCE, COPY, SENDRECV, SEND, RECV, YIELD_LAST = range(11)
# parse's status
OK, BAD_ENTRY, BAD_YIELD, BAD_WAIT, BAD_PEER, BAD_WAITED, BAD_YIELDED = range(7)


@njit(nogil=True, cache=True)
def _sizes(tape, tape_base):  # pragma: no cover - compiled
    """(ops, requests, waited handles, local entries, steps, handles) per rank, or a status and the rank."""
    p = tape_base.size - 1
    counts = np.zeros((p, 6), np.int64)
    for r in range(p):
        i, hi = tape_base[r], tape_base[r + 1]
        nops = nreq = nwait = nlocal = nstep = nhandle = 0
        while i < hi:
            code = tape[i]
            if code < 0:  # a yield
                nops += 2
                i += 1
            elif code == T_SENDRECV:
                nops += 1
                nreq += 2
                nstep += 1
                i += 6
            elif code == T_ISEND or code == T_IRECV:
                nops += 1
                nreq += 1
                nhandle += 1
                i += 4
            elif code == T_SEND or code == T_RECV:
                nops += 1
                nreq += 1
                nstep += 1
                i += 4
            elif code == T_REDUCE or code == T_COPY:
                nops += 1
                nlocal += 1
                i += 2
            elif code == T_WAIT:
                k = tape[i + 1]
                nops += 2
                nwait += k
                nstep += 1
                i += 2 + k
            else:
                return BAD_ENTRY, r, counts
        counts[r] = (nops + 1, nreq, nwait, nlocal, nstep, nhandle)  # + END
    return OK, -1, counts


@njit(nogil=True, cache=True)
def _bases(column):  # pragma: no cover - compiled
    out = np.zeros(column.size + 1, np.int64)
    for r in range(column.size):
        out[r + 1] = out[r] + column[r]
    return out


@njit(nogil=True, cache=True)
def parse(tape, tape_base):  # pragma: no cover - compiled
    """Read every rank's tape (rank r's is ``tape[tape_base[r]:tape_base[r+1]]``).

    Returns (status, rank, (ops, op_base, req_kind, req_rank, req_peer, req_tag, req_bytes,
    req_base, waits, wait_base, local, local_base), step_base, steps yielded): the schedule's
    arrays (``local`` holds a reduction's bytes, or ~bytes (negative) for a copy). Besides the
    handles it checks what the scheduler checks at the end of a run: every request is waited for
    exactly once, in a step yielded exactly once (else ``BAD_WAITED``, ``BAD_YIELDED``; the rank
    is -1 there). Narrow integer types where they suffice: the arrays are big, and fresh memory
    costs page faults.
    """
    p = tape_base.size - 1
    status, bad, counts = _sizes(tape, tape_base)
    op_base, req_base = _bases(counts[:, 0]), _bases(counts[:, 1])
    wait_base, local_base = _bases(counts[:, 2]), _bases(counts[:, 3])
    step_base, handle_base = _bases(counts[:, 4]), _bases(counts[:, 5])
    nreq = req_base[p]
    if nreq >= 1 << 31 or step_base[p] >= 1 << 31:
        raise RuntimeError("record: more than 2**31 requests or steps")
    ops = np.empty(op_base[p], np.int32)
    kind = np.empty(nreq, np.int8)
    rank = np.empty(nreq, np.int32)
    peer = np.empty(nreq, np.int32)
    tag = np.empty(nreq, np.int64)
    nbytes = np.empty(nreq, np.int64)
    waits = np.empty(wait_base[p], np.int64)
    local = np.empty(local_base[p], np.int64)
    req_step = np.full(nreq, -1, np.int32)
    waited = np.zeros(nreq, np.int32)
    yields = np.zeros(step_base[p], np.int32)
    handle_req = np.empty(handle_base[p], np.int64)  # request handle -> request
    empty = (ops, op_base, kind, rank, peer, tag, nbytes, req_base, waits, wait_base, local, local_base)
    if status != OK:
        return status, bad, empty, step_base, 0
    for r in range(p):
        i, hi = tape_base[r], tape_base[r + 1]
        o, q, w, loc, s, h = op_base[r], req_base[r], wait_base[r], local_base[r], step_base[r], handle_base[r]
        while i < hi:
            code = tape[i]
            if code < 0:  # yield of step handle code: global step -1 - code
                y = -1 - code
                if not step_base[r] <= y < s:
                    return BAD_YIELD, r, empty, step_base, 0
                yields[y] += 1
                if y == s - 1:
                    ops[o] = YIELD_LAST
                    o += 1
                else:
                    ops[o] = YIELD
                    ops[o + 1] = y
                    o += 2
                i += 1
                continue
            if code == T_REDUCE or code == T_COPY:
                ops[o] = REDUCE if code == T_REDUCE else COPY
                local[loc] = tape[i + 1] if code == T_REDUCE else ~tape[i + 1]
                o += 1
                loc += 1
                i += 2
                continue
            if code == T_WAIT:
                k = tape[i + 1]
                ops[o] = WAIT
                ops[o + 1] = k
                o += 2
                for j in range(i + 2, i + 2 + k):
                    handle = tape[j]
                    if not handle_base[r] <= handle < h:  # not a request this rank has posted
                        return BAD_WAIT, r, empty, step_base, 0
                    x = handle_req[handle]
                    waits[w] = x
                    w += 1
                    waited[x] += 1
                    req_step[x] = s
                s += 1
                i += 2 + k
                continue
            if code == T_SENDRECV:
                if not (0 <= tape[i + 1] < p and 0 <= tape[i + 2] < p and tape[i + 3] >= 0):
                    return BAD_PEER, r, empty, step_base, 0
                ops[o] = SENDRECV
                kind[q], peer[q], tag[q], nbytes[q] = 0, tape[i + 1], tape[i + 3], tape[i + 4]
                kind[q + 1], peer[q + 1], tag[q + 1], nbytes[q + 1] = 1, tape[i + 2], tape[i + 3], tape[i + 5]
                for x in (q, q + 1):
                    rank[x] = r
                    waited[x] = 1
                    req_step[x] = s
                o += 1
                q += 2
                s += 1
                i += 6
                continue
            # ISEND, IRECV, SEND, RECV: one request
            if not (0 <= tape[i + 1] < p and tape[i + 2] >= 0):
                return BAD_PEER, r, empty, step_base, 0
            is_recv = code == T_IRECV or code == T_RECV
            kind[q], rank[q], peer[q], tag[q], nbytes[q] = is_recv, r, tape[i + 1], tape[i + 2], tape[i + 3]
            if code == T_ISEND or code == T_IRECV:
                ops[o] = IRECV if is_recv else ISEND
                handle_req[h] = q
                h += 1
            else:
                ops[o] = RECV if is_recv else SEND
                waited[q] = 1
                req_step[q] = s
                s += 1
            o += 1
            q += 1
            i += 4
        ops[o] = END
    for x in range(nreq):
        if waited[x] != 1:
            return BAD_WAITED, -1, empty, step_base, 0
        if yields[req_step[x]] != 1:
            return BAD_YIELDED, -1, empty, step_base, 0
    yielded = 0
    for y in yields:
        if y > 1:
            return BAD_YIELDED, -1, empty, step_base, 0
        yielded += y
    return OK, -1, empty, step_base, yielded


@njit(nogil=True, cache=True)
def match_keys(kind, rank, peer, tag, p, tags):  # pragma: no cover - compiled
    """The sends and the receives (request ids, in posting order) and each one's key
    ((source * p + destination) * tags + tag), for :func:`collectives.sim.record._match`."""
    n = kind.size
    nsend = 0
    for q in range(n):
        nsend += kind[q] == 0
    sends, s_key = np.empty(nsend, np.int64), np.empty(nsend, np.int64)
    recvs, r_key = np.empty(n - nsend, np.int64), np.empty(n - nsend, np.int64)
    i = j = 0
    for q in range(n):
        if kind[q] == 0:
            sends[i] = q
            s_key[i] = (np.int64(rank[q]) * p + peer[q]) * tags + tag[q]
            i += 1
        else:
            recvs[j] = q
            r_key[j] = (np.int64(peer[q]) * p + rank[q]) * tags + tag[q]
            j += 1
    return sends, s_key, recvs, r_key


@njit(nogil=True, cache=True)
def pair_up(sends, s_key, s_order, recvs, r_key, r_order, nbytes):  # pragma: no cover - compiled
    """``partner`` from the sends and receives in key order: (0, partner), or (1, _) if a key has
    more sends than receives or the other way round, (2, _) if a message is larger than its receive."""
    partner = np.empty(sends.size + recvs.size, np.int64)
    for i in range(sends.size):
        a, b = s_order[i], r_order[i]
        if s_key[a] != r_key[b]:
            return 1, partner
        s, r = sends[a], recvs[b]
        if nbytes[s] > nbytes[r]:
            return 2, partner
        partner[s] = r
        partner[r] = s
    return 0, partner
