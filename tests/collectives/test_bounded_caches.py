"""Per-communicator caches stay bounded: a program that makes ever new calls must not leak.

The soak benchmark (benchmarks/soak.py) found plans and scratch views growing by about 1 KiB per
distinct call; these tests pin the bound without MPI.
"""

from __future__ import annotations

import numpy as np

from collectives.plans import Plan, PlanCache


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


class _CountingExchange:
    released = 0

    def release(self) -> None:
        self.released += 1


def test_plans_forgotten_free_their_exchanges_persistent_sends() -> None:
    cache = PlanCache()
    kept, replaced, dropped = _CountingExchange(), _CountingExchange(), _CountingExchange()
    cache["a"] = Plan(None, None, False, replaced)
    cache["a"] = Plan(None, None, False, kept)  # a new plan for the same call frees the old one's sends
    assert (replaced.released, kept.released) == (1, 0)
    cache["a"] = Plan(None, None, False, kept)  # the same exchange again is not freed under itself
    assert kept.released == 0
    cache["b"] = Plan(None, None, False, dropped)
    cache.clear()
    assert (kept.released, dropped.released) == (1, 1)
    made = [_CountingExchange() for _ in range(PlanCache.LIMIT + 1)]
    for i, exchange in enumerate(made):  # starting over at the limit frees them too
        cache[i] = Plan(None, None, False, exchange)
    assert len(cache) == 1 and [e.released for e in made] == [1] * PlanCache.LIMIT + [0]
