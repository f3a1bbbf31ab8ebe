"""How a buffer of n elements is cut into p nearly equal chunks."""

from __future__ import annotations


def chunk_bounds(n: int, p: int) -> list[int]:
    """Offsets ``b`` with chunk i = ``[b[i], b[i+1])``; the first ``n % p`` chunks get one extra.

    Works for any n >= 0, including n < p (some chunks are then empty).
    """
    base, extra = divmod(n, p)
    bounds = [0]
    for i in range(p):
        bounds.append(bounds[-1] + base + (1 if i < extra else 0))
    return bounds
