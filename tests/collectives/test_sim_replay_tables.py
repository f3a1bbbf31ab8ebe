"""The replay's per-message tables (size classes, pair numbers, counters) against numpy/Python oracles.

The equivalence tests (test_sim_replay.py) cover the common paths end to end; these also reach the
ones small runs do not: more distinct sizes than the linear scan keeps, and no p * p pair table.
"""

from __future__ import annotations

import numpy as np
import pytest

from collectives.sim.replay_tables import FEW_SIZES, local_counters, message_tables, size_classes


@pytest.mark.parametrize("distinct", [0, 1, 3, FEW_SIZES, FEW_SIZES + 1, 500])
def test_size_classes_are_numpy_unique(distinct):
    rng = np.random.default_rng(distinct)
    pool = rng.choice(np.arange(-(1 << 40), 1 << 40, 7919), size=max(distinct, 1), replace=False)
    values = pool[rng.integers(0, max(distinct, 1), 3000)] if distinct else np.zeros(0, np.int64)
    values = np.repeat(values, rng.integers(1, 4, values.size))  # runs of equal values, as schedules have
    classes, sizes = size_classes(values.astype(np.int64), None)
    expected_sizes, expected_classes = np.unique(values, return_inverse=True)
    assert sizes.tolist() == expected_sizes.tolist()
    assert classes.tolist() == expected_classes.reshape(-1).tolist()
    index = np.arange(values.size - 1, -1, -2, dtype=np.int32)  # a subset, in another order
    classes, sizes = size_classes(values.astype(np.int64), index)
    expected_sizes, expected_classes = np.unique(values[index], return_inverse=True)
    assert sizes.tolist() == expected_sizes.tolist()
    assert classes.tolist() == expected_classes.reshape(-1).tolist()


def _schedule(p, rng, sends):
    """Random requests, rank by rank: kinds, peers, bytes, bases (receives interleaved)."""
    kind, peer, nbytes, base = [], [], [], [0]
    for _rank in range(p):
        for _ in range(int(rng.integers(0, 2 * sends // p + 1))):
            kind.append(int(rng.integers(0, 2)))
            peer.append(int(rng.integers(0, p)))
            nbytes.append(int(rng.choice([0, 4, 4096, 1 << 20])))
        base.append(len(kind))
    return (np.array(kind, np.int8), np.array(peer, np.int32), np.array(nbytes, np.int64), np.array(base, np.int64))


@pytest.mark.parametrize("table", [True, False])
@pytest.mark.parametrize("skip_self", [True, False])
def test_message_tables_match_a_python_oracle(table, skip_self):
    p = 7
    rng = np.random.default_rng(3)
    kind, peer, nbytes, base = _schedule(p, rng, 400)
    pair_table = np.zeros(p * p if table else 0, np.int32)
    size, pair, sizes, keys, sent_msgs, sent_bytes, recv_msgs, recv_bytes = message_tables(
        kind, peer, nbytes, base, p, pair_table, skip_self
    )
    msgs = [(r, int(peer[q]), int(nbytes[q])) for r in range(p) for q in range(base[r], base[r + 1]) if kind[q] == 0]
    want_keys = sorted({s * p + d for s, d, _ in msgs if not (skip_self and s == d)})
    assert keys.tolist() == want_keys
    assert pair.tolist() == [-1 if skip_self and s == d else want_keys.index(s * p + d) for s, d, _ in msgs]
    want_sizes = sorted({b for _, _, b in msgs})
    assert sizes.tolist() == want_sizes
    assert size.tolist() == [want_sizes.index(b) for _, _, b in msgs]
    assert sent_msgs.tolist() == [sum(s == r for s, _, _ in msgs) for r in range(p)]
    assert sent_bytes.tolist() == [sum(b for s, _, b in msgs if s == r) for r in range(p)]
    assert recv_msgs.tolist() == [sum(d == r for _, d, _ in msgs) for r in range(p)]
    assert recv_bytes.tolist() == [sum(b for _, d, b in msgs if d == r) for r in range(p)]


def test_local_counters():
    local = np.array([5, ~7, 0, 3, ~0, ~2], np.int64)  # reductions' bytes; copies as ~bytes
    base = np.array([0, 3, 3, 6], np.int64)
    reduce_bytes, reduce_calls, copy_bytes = local_counters(local, base)
    assert reduce_bytes.tolist() == [5, 0, 3]
    assert reduce_calls.tolist() == [2, 0, 1]
    assert copy_bytes.tolist() == [7, 0, 2]
