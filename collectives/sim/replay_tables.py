"""What the replay loop reads about each message and each local operation, in one compiled pass.

A recorded schedule (:mod:`collectives.sim.record`) lists requests rank by rank. Before timing it,
:mod:`collectives.sim.replay` needs per message (send request, in posting order) its size class
(an index into the distinct sizes, whose link time and bytes the loop looks up in small tables)
and the number of its (source, destination) pair (a private link, or a route), and per rank the
counters the result reports. Numbering distinct values by sorting millions of them (``np.unique``)
took a tenth of a second per million messages; here a value seen last is looked up first, pairs
go through a table indexed by ``source * p + destination``, and only the few distinct values are
sorted. Numbers come out as ``np.unique``'s (sorted distinct values), so nothing downstream depends
on how they were found.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Distinct sizes looked up by a linear scan up to this many; more, and they are sorted instead.
FEW_SIZES = 64


@njit(nogil=True, cache=True)
def size_classes(values, index):  # pragma: no cover - compiled
    """(classes, distinct) of ``values[index]``: ``distinct`` its sorted distinct values, ``classes[i]``
    the position of ``values[index[i]]`` in it (``index`` None: all of ``values``)."""
    n = values.size if index is None else index.size
    classes = np.empty(n, np.int32)
    seen = np.empty(FEW_SIZES, values.dtype)
    nseen = 0
    last, last_class = 0, -1
    for i in range(n):
        v = values[i] if index is None else values[index[i]]
        if last_class >= 0 and v == last:
            classes[i] = last_class
            continue
        c = -1
        for j in range(nseen):
            if seen[j] == v:
                c = j
                break
        if c < 0:
            if nseen == FEW_SIZES:  # many distinct values: sort them all
                chosen = values.copy() if index is None else values[index]
                distinct = np.unique(chosen)
                for k in range(n):
                    classes[k] = np.searchsorted(distinct, chosen[k])
                return classes, distinct
            seen[nseen] = v
            c = nseen
            nseen += 1
        classes[i] = c
        last, last_class = v, c
    order = np.argsort(seen[:nseen])  # renumber in sorted order, as np.unique would
    rank_of = np.empty(nseen, np.int32)
    for k in range(nseen):
        rank_of[order[k]] = k
    for i in range(n):
        classes[i] = rank_of[classes[i]]
    return classes, seen[:nseen][order]


@njit(nogil=True, cache=True)
def message_tables(req_kind, req_peer, req_bytes, req_base, p, pair_table, skip_self):  # pragma: no cover - compiled
    """Per message, in posting order: (size class, pair number), the distinct sizes, the distinct
    pair keys ``source * p + destination`` in sorted order, and per rank (messages sent, bytes
    sent, messages received, bytes received).

    ``pair_table`` is a zeroed int32 array of p * p entries (it is written), or empty to sort the
    keys instead. With ``skip_self`` a message to its own rank has pair -1 and its key is left
    out (it uses no link).
    """
    nreq = req_kind.size
    nsend = 0
    for q in range(nreq):
        nsend += req_kind[q] == 0
    sent_msgs = np.zeros(p, np.int64)
    sent_bytes = np.zeros(p, np.int64)
    recv_msgs = np.zeros(p, np.int64)
    recv_bytes = np.zeros(p, np.int64)
    sends = np.empty(nsend, np.int32)  # request ids of the messages
    m = 0
    for r in range(p):
        for q in range(req_base[r], req_base[r + 1]):
            if req_kind[q] == 0:
                d, b = req_peer[q], req_bytes[q]
                sends[m] = q
                sent_msgs[r] += 1
                sent_bytes[r] += b
                recv_msgs[d] += 1
                recv_bytes[d] += b
                m += 1
    classes, sizes = size_classes(req_bytes, sends)
    pair = np.empty(nsend, np.int32)
    if pair_table.size == 0:
        keys = np.empty(nsend, np.int64)
        k = 0
        m = 0
        for r in range(p):
            for q in range(req_base[r], req_base[r + 1]):
                if req_kind[q] == 0 and not (skip_self and req_peer[q] == r):
                    keys[k] = np.int64(r) * p + req_peer[q]
                    k += 1
        distinct = np.unique(keys[:k])
    else:
        found = np.empty(min(nsend, p * p), np.int64)
        k = 0
        for r in range(p):
            for q in range(req_base[r], req_base[r + 1]):
                if req_kind[q] == 0 and not (skip_self and req_peer[q] == r):
                    key = np.int64(r) * p + req_peer[q]
                    if pair_table[key] == 0:
                        found[k] = key
                        k += 1
                        pair_table[key] = 1
        distinct = np.sort(found[:k])
        for j in range(k):
            pair_table[distinct[j]] = j + 1
    m = 0
    for r in range(p):
        for q in range(req_base[r], req_base[r + 1]):
            if req_kind[q] == 0:
                if skip_self and req_peer[q] == r:
                    pair[m] = -1
                elif pair_table.size:
                    pair[m] = pair_table[np.int64(r) * p + req_peer[q]] - 1
                else:
                    pair[m] = np.searchsorted(distinct, np.int64(r) * p + req_peer[q])
                m += 1
    return classes, pair, sizes, distinct, sent_msgs, sent_bytes, recv_msgs, recv_bytes


@njit(nogil=True, cache=True)
def local_counters(local, local_base):  # pragma: no cover - compiled
    """Per rank (bytes reduced, reductions, bytes copied); ``local`` holds a reduction's bytes or ~bytes for a copy."""
    p = local_base.size - 1
    reduce_bytes = np.zeros(p, np.int64)
    reduce_calls = np.zeros(p, np.int64)
    copy_bytes = np.zeros(p, np.int64)
    for r in range(p):
        for i in range(local_base[r], local_base[r + 1]):
            m = local[i]
            if m >= 0:
                reduce_bytes[r] += m
                reduce_calls[r] += 1
            else:
                copy_bytes[r] += ~m
    return reduce_bytes, reduce_calls, copy_bytes
