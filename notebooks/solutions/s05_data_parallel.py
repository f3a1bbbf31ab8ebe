"""Reference solutions of notebook 05 (data parallel)."""

from __future__ import annotations


def noise_scale(g_small_sq: float, g_big_sq: float, b_small: int, b_big: int) -> float:
    """B_simple = tr(Sigma) / |G|^2 from E|G_B|^2 = |G|^2 + tr(Sigma)/B at two batch sizes."""
    g2 = (b_big * g_big_sq - b_small * g_small_sq) / (b_big - b_small)
    trace = (g_small_sq - g_big_sq) / (1 / b_small - 1 / b_big)
    return trace / g2


def exposed_comm(ready, durations, backward_end: float) -> float:
    """One communication thread takes the buckets in order; what sticks out past backward is exposed."""
    finish = 0.0
    for r, d in zip(ready, durations):
        finish = max(finish, r) + d
    return max(0.0, finish - backward_end)
