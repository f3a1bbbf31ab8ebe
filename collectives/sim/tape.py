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

:func:`parse_rank` appends one rank's tape to the arrays of :class:`collectives.sim.record.Schedule`
(the op stream the replay loop walks, requests, waits, local work, steps) and checks every handle:
a rank may wait only for its own posted requests and yield only steps it made. Anything else is
reported by a status code (``BAD_*``); the caller then falls back to the reference scheduler.
"""

from __future__ import annotations

import numpy as np
from numba import njit

TAPE_BASE = 1 << 60
T_ISEND, T_IRECV, T_WAIT, T_SENDRECV, T_SEND, T_RECV, T_REDUCE, T_COPY = (TAPE_BASE + k for k in range(8))
# The replay loop's op codes (collectives.sim.replay_loop's, repeated: numba needs plain globals).
END, ISEND, IRECV, WAIT, YIELD, REDUCE, COPY, SENDRECV, SEND, RECV, YIELD_LAST = range(11)
# parse_rank's status (NEED_ROOM: the output arrays are too small for the rank; grow them and call again)
OK, BAD_ENTRY, BAD_YIELD, BAD_WAIT, BAD_PEER, BAD_WAITED, BAD_YIELDED, NEED_ROOM = range(8)


# parse_rank's fill counters: entries written so far of each output array
F_OPS, F_REQ, F_WAIT, F_LOCAL = range(4)


@njit(nogil=True, cache=True)
def rank_sizes(tape):  # pragma: no cover - compiled
    """(status, counts): the rank's (ops, requests, waited handles, local entries, steps, request handles)."""
    counts = np.zeros(6, np.int64)
    nops = nreq = nwait = nlocal = nstep = nhandle = 0
    i, hi = 0, tape.size
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
        elif code == T_WAIT and i + 1 < hi and tape[i + 1] >= 0:
            k = tape[i + 1]
            nops += 2
            nwait += k
            nstep += 1
            i += 2 + k
        else:
            return BAD_ENTRY, counts
    if i != hi:  # the last entry is cut short
        return BAD_ENTRY, counts
    counts[0], counts[1], counts[2], counts[3], counts[4], counts[5] = nops + 1, nreq, nwait, nlocal, nstep, nhandle
    return OK, counts  # nops + 1: END


@njit(nogil=True, cache=True)
def parse_rank(
    tape, p, first_step, first_handle, ops, kind, peer, tag, nbytes, waits, local, fill
):  # pragma: no cover - compiled
    """Append one rank's tape to the schedule's arrays; returns (status, its counts from :func:`rank_sizes`).

    The rank's steps are global steps ``first_step ..`` and its request handles ``first_handle ..``;
    its requests get the global ids ``fill[F_REQ] ..``. Writes ``ops`` (op codes and their operands),
    per request ``kind``, ``peer``, ``tag``, ``nbytes``, the requests each wait lists (``waits``,
    global ids) and ``local`` (a reduction's bytes, or ~bytes (negative) for a copy), from the
    positions in ``fill``, which it advances; ``NEED_ROOM`` (nothing written) if one is too small.

    Besides the handles it checks what the scheduler checks at the end of a run, rank by rank
    (a rank can only wait for its own requests and yield its own steps): every request is waited
    for exactly once, in a step yielded exactly once (else ``BAD_WAITED``, ``BAD_YIELDED``).
    """
    status, counts = rank_sizes(tape)
    if status != OK:
        return status, counts
    if (
        fill[F_OPS] + counts[0] > ops.size
        or fill[F_REQ] + counts[1] > kind.size
        or fill[F_WAIT] + counts[2] > waits.size
        or fill[F_LOCAL] + counts[3] > local.size
    ):
        return NEED_ROOM, counts
    nreq, nstep, nhandle = counts[1], counts[4], counts[5]
    q0 = fill[F_REQ]
    req_step = np.full(nreq, -1, np.int64)  # the rank's step (from 0) that waits for each request
    waited = np.zeros(nreq, np.int32)
    yields = np.zeros(nstep, np.int32)
    handle_req = np.empty(nhandle, np.int64)  # request handle - first_handle -> the rank's request
    o, q, w, loc = fill[F_OPS], 0, fill[F_WAIT], fill[F_LOCAL]
    s = h = 0  # the rank's steps and request handles so far
    i, hi = 0, tape.size
    while i < hi:
        code = tape[i]
        if code < 0:  # yield of step handle code: global step -1 - code
            y = -1 - code - first_step
            if not 0 <= y < s:
                return BAD_YIELD, counts
            yields[y] += 1
            if y == s - 1:
                ops[o] = YIELD_LAST
                o += 1
            else:
                ops[o] = YIELD
                ops[o + 1] = first_step + y
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
                handle = tape[j] - first_handle
                if not 0 <= handle < h:  # not a request this rank has posted
                    return BAD_WAIT, counts
                x = handle_req[handle]
                waits[w] = q0 + x
                w += 1
                waited[x] += 1
                req_step[x] = s
            s += 1
            i += 2 + k
            continue
        if code == T_SENDRECV:
            if not (0 <= tape[i + 1] < p and 0 <= tape[i + 2] < p and tape[i + 3] >= 0):
                return BAD_PEER, counts
            ops[o] = SENDRECV
            g = q0 + q
            kind[g], peer[g], tag[g], nbytes[g] = 0, tape[i + 1], tape[i + 3], tape[i + 4]
            kind[g + 1], peer[g + 1], tag[g + 1], nbytes[g + 1] = 1, tape[i + 2], tape[i + 3], tape[i + 5]
            waited[q] = waited[q + 1] = 1
            req_step[q] = req_step[q + 1] = s
            o += 1
            q += 2
            s += 1
            i += 6
            continue
        # ISEND, IRECV, SEND, RECV: one request
        if not (0 <= tape[i + 1] < p and tape[i + 2] >= 0):
            return BAD_PEER, counts
        is_recv = code == T_IRECV or code == T_RECV
        g = q0 + q
        kind[g], peer[g], tag[g], nbytes[g] = is_recv, tape[i + 1], tape[i + 2], tape[i + 3]
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
            return BAD_WAITED, counts
        if yields[req_step[x]] != 1:
            return BAD_YIELDED, counts
    for y in yields:
        if y > 1:
            return BAD_YIELDED, counts
    fill[F_OPS], fill[F_REQ], fill[F_WAIT], fill[F_LOCAL] = o + 1, q0 + q, w, loc
    return OK, counts


@njit(nogil=True, cache=True)
def match_keys(kind, req_base, peer, tag, p, tags):  # pragma: no cover - compiled
    """The sends and the receives (request ids, in posting order) and each one's key
    ((source * p + destination) * tags + tag), for :func:`collectives.sim.record._match`."""
    n = kind.size
    nsend = 0
    for q in range(n):
        nsend += kind[q] == 0
    sends, s_key = np.empty(nsend, np.int32), np.empty(nsend, np.int64)
    recvs, r_key = np.empty(n - nsend, np.int32), np.empty(n - nsend, np.int64)
    i = j = 0
    for r in range(p):
        for q in range(req_base[r], req_base[r + 1]):
            if kind[q] == 0:
                sends[i] = q
                s_key[i] = (np.int64(r) * p + peer[q]) * tags + tag[q]
                i += 1
            else:
                recvs[j] = q
                r_key[j] = (np.int64(peer[q]) * p + r) * tags + tag[q]
                j += 1
    return sends, s_key, recvs, r_key


@njit(nogil=True, cache=True)
def pair_up(sends, s_key, s_order, recvs, r_key, r_order, nbytes):  # pragma: no cover - compiled
    """``partner`` from the sends and receives in key order: (0, partner), or (1, _) if a key has
    more sends than receives or the other way round, (2, _) if a message is larger than its receive."""
    partner = np.empty(sends.size + recvs.size, np.int32)
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
