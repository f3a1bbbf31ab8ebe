"""Per-communicator caches stay bounded: a program that makes ever new calls must not leak.

The soak benchmark (benchmarks/soak.py) found plans and scratch views growing by about 1 KiB per
distinct call; these tests pin the bound without MPI.
"""

from __future__ import annotations

import numpy as np

from collectives.plans import PlanCache


def test_plan_cache_starts_over_at_its_limit() -> None:
    cache = PlanCache()
    for i in range(PlanCache.LIMIT * 3):
        cache["ring", "sum", np.dtype(np.float32), i] = object()
        assert len(cache) <= PlanCache.LIMIT
    # the newest plan is always kept
    assert ("ring", "sum", np.dtype(np.float32), PlanCache.LIMIT * 3 - 1) in cache


def test_plan_cache_keeps_the_version_stamps_when_it_starts_over() -> None:
    cache = PlanCache()
    cache.registry, cache.model = 7, 3
    for i in range(PlanCache.LIMIT + 1):
        cache[i] = object()
    assert (cache.registry, cache.model) == (7, 3)
