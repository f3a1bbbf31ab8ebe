"""How a buffer of n elements is cut into p nearly equal chunks, and chunks into segments."""

from __future__ import annotations

from functools import lru_cache


def chunk_bounds(n: int, p: int) -> list[int]:
    """Offsets ``b`` with chunk i = ``[b[i], b[i+1])``; the first ``n % p`` chunks get one extra.

    Works for any n >= 0, including n < p (some chunks are then empty).
    """
    base, extra = divmod(n, p)
    bounds = [0]
    for i in range(p):
        bounds.append(bounds[-1] + base + (1 if i < extra else 0))
    return bounds


@lru_cache(maxsize=4096)
def bounds_of(n: int, p: int) -> tuple[int, ...]:
    """``chunk_bounds(n, p)`` as a tuple, worked out once per call pattern: every rank of an algorithm
    asks for the same bounds, and at thousands of simulated ranks p lists of p + 1 offsets each were
    most of a simulation's time (Rabenseifner at 4096 ranks)."""
    return tuple(chunk_bounds(n, p))


def segments(lo: int, hi: int, seg: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` cut into pieces of at most ``seg`` elements; an empty range is one empty piece.

    Sender and receiver compute the same pieces, so each piece is one message.
    """
    if hi <= lo:
        return [(lo, lo)]
    return [(a, min(a + seg, hi)) for a in range(lo, hi, seg)]


def segment_count(n: int, seg: int) -> int:
    """``len(segments(0, n, seg))``: at least one, even for n = 0."""
    return max(1, -(-n // seg))


def segment_elements(segment_bytes: int, itemsize: int) -> int:
    """Elements per segment for a segment size in bytes (at least one)."""
    return max(1, segment_bytes // itemsize)
