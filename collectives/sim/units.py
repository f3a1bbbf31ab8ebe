"""Human units on the command line and in reports: sizes, bandwidths, times and rank ranges.

Times and bandwidths are read and written by :mod:`collectives.link` (one unit table for the
whole package); they are re-exported here next to the simulator's sizes and rank ranges.
"""

from __future__ import annotations

import re

from collectives.link import NUMBER as _NUMBER
from collectives.link import format_bandwidth, format_time, parse_bandwidth, parse_time

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}


def parse_size(text: str | int) -> int:
    """Bytes from "64", "4K", "4KiB", "1M", "1GB" (K, M, G alone are binary, as in nccl-tests)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(_NUMBER + r"\s*([a-z]*)", str(text).strip().lower())
    if not m or m.group(2) not in _SIZE_UNITS:
        raise ValueError(
            f"cannot read the size {text!r}; expected a number with an optional unit such as 64, 4K, 1MiB, 1GB"
        )
    return int(round(float(m.group(1)) * _SIZE_UNITS[m.group(2)]))


def parse_ranks(text: str) -> list[int]:
    """Rank counts from "8", "2,3,4", "2..4096" (powers of two) or "2..64:+2" (arithmetic step)."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if ".." in part:
            lo_s, hi_s = part.split("..", 1)
            step = None
            if ":" in hi_s:
                hi_s, step_s = hi_s.split(":", 1)
                step = int(step_s.lstrip("+"))
            lo, hi = int(lo_s), int(hi_s)
            if lo < 1 or hi < lo:
                raise ValueError(f"bad rank range {part!r}: expected lo..hi with 1 <= lo <= hi")
            out.extend(range(lo, hi + 1, step) if step else _geometric(lo, hi, 2))
        else:
            out.append(int(part))
    if not out or min(out) < 1:
        raise ValueError(f"bad rank list {text!r}: every rank count must be at least 1")
    return sorted(set(out))


def parse_sizes(text: str) -> list[int]:
    """Byte sizes from "1M", "1K,64K", "1K..1G" (every power of two) or "1K..1G:x4" (factor 4)."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if ".." in part:
            lo_s, hi_s = part.split("..", 1)
            factor = 2
            if ":" in hi_s:
                hi_s, f_s = hi_s.split(":", 1)
                factor = int(f_s.lstrip("x*"))
            lo, hi = parse_size(lo_s), parse_size(hi_s)
            if lo < 1 or hi < lo or factor < 2:
                raise ValueError(f"bad size range {part!r}: expected lo..hi[:xF] with 1 <= lo <= hi and F >= 2")
            out.extend(_geometric(lo, hi, factor))
        else:
            out.append(parse_size(part))
    return sorted(set(out))


def _geometric(lo: int, hi: int, factor: int) -> list[int]:
    vals = []
    v = lo
    while v <= hi:
        vals.append(v)
        v *= factor
    return vals


def format_size(nbytes: float) -> str:
    """Compact binary size: 1024 -> "1K", 1536 -> "1.5K" (nccl-tests style)."""
    for unit, scale in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if nbytes >= scale:
            v = nbytes / scale
            return f"{v:.0f}{unit}" if v == int(v) else f"{v:.3g}{unit}"
    return f"{int(nbytes)}"


__all__ = [
    "format_bandwidth",
    "format_size",
    "format_time",
    "parse_bandwidth",
    "parse_ranks",
    "parse_size",
    "parse_sizes",
    "parse_time",
]
