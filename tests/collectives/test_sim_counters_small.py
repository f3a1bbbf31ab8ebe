"""Simulator counters against the declared costs where some messages are empty (n < p elements).

``test_sim_harness`` checks the counters on buffers of a kilobyte and more, where every chunk
holds data. Below p elements some chunks are empty, and an algorithm still sends them (MPI
delivers zero-byte messages; skipping them would desynchronise the ranks' steps), so the
message count must stay what the cost declares while the bytes shrink to what is really there.
"""

import numpy as np
import pytest

from collectives import REGISTRY
from collectives.sim import simulate

RANKS = (2, 3, 4, 5, 7, 8, 16, 33)
MSG = "msg"


def small_counts(p: int) -> list[int]:
    """Element counts with empty chunks (0 < n < p), none at all (0), and just past p."""
    return sorted({0, 1, 2, p // 2, p - 1, p, p + 1})


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_counters_match_the_declared_cost_when_chunks_are_empty(name):
    spec = REGISTRY[name]
    for p in RANKS:
        for n in small_counts(p):
            for dtype in (np.uint8, np.complex128):
                itemsize = np.dtype(dtype).itemsize
                declared = spec.cost(p, n * itemsize, itemsize)
                result = simulate(name, p, n * itemsize, dtype=dtype)
                busiest = result.busiest()
                where = f"{name} p={p} n={n} {np.dtype(dtype)}"
                assert busiest["messages_sent"] == declared.messages_per_rank, where
                assert busiest["bytes_sent"] == declared.bytes_sent_per_rank, where
                # every message sent is received, byte for byte
                assert sum(result.sent_msgs) == sum(result.recv_msgs), where
                assert sum(result.sent_bytes) == sum(result.recv_bytes), where


@pytest.mark.parametrize("name, n", [("ring", 3), ("rabenseifner", 3), ("double_tree", 1)])
def test_the_small_sizes_really_send_empty_messages(name, n):
    """Chunks (and the double tree's halves) below p elements are sent empty: the case above is not vacuous."""
    result = simulate(name, 8, n * 4, dtype=np.float32, timeline=True)
    sizes = [e[5] for e in result.events if e[0] == MSG]
    assert sizes and 0 in sizes and max(sizes) > 0
    assert sum(sizes) == sum(result.sent_bytes)
