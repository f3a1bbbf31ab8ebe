"""Reference solutions of notebook 06 (large batch)."""

from __future__ import annotations


def steps_to_target(batch: float, s_min: float, b_crit: float) -> float:
    """McCandlish et al.: S = S_min (1 + B_crit / B)."""
    return s_min * (1 + b_crit / batch)


def best_workers(workers, per_worker_batch, s_min, b_crit, step_time) -> int:
    """Time to target is steps at the global batch times the step time; take the smallest."""
    return min(workers, key=lambda p: steps_to_target(p * per_worker_batch, s_min, b_crit) * step_time(p))
