"""Human units on the command line and in reports: sizes, bandwidths, times and rank ranges."""

from __future__ import annotations

import re

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
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_BW_UNITS = {
    "b/s": 1.0,
    "kb/s": 1e3,
    "mb/s": 1e6,
    "gb/s": 1e9,
    "tb/s": 1e12,
    "gib/s": 1024**3,
    "mib/s": 1024**2,
    "bps": 1 / 8,
    "kbps": 1e3 / 8,
    "mbps": 1e6 / 8,
    "gbps": 1e9 / 8,
    "tbps": 1e12 / 8,
}
_NUMBER = r"([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)"


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


def parse_time(text: str | float) -> float:
    """Seconds from "2us", "1.5 ms", "3e-6" (a bare number is seconds)."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(_NUMBER + r"\s*([a-zµ]*)", str(text).strip().lower())
    unit = m.group(2) if m else None
    if m is None or (unit and unit not in _TIME_UNITS):
        raise ValueError(f"cannot read the time {text!r}; expected a number with a unit such as 2us, 1.5ms, 3e-6s")
    return float(m.group(1)) * _TIME_UNITS[unit or "s"]


def parse_bandwidth(text: str | float) -> float:
    """Bytes per second from "12.5GB/s", "100Gbps" (bits), "25e9" (a bare number is bytes/s)."""
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip()
    m = re.fullmatch(_NUMBER + r"\s*([A-Za-z/]*)", s)
    if not m:
        raise ValueError(f"cannot read the bandwidth {text!r}; expected e.g. 12.5GB/s or 100Gbps")
    unit = m.group(2)
    if not unit:
        return float(m.group(1))
    # "Gb/s" (bits) and "GB/s" (bytes) differ only in case: honour it.
    if unit.endswith("b/s") and not unit.endswith("B/s") and unit.lower() != "b/s":
        unit = unit[:-3] + "bps"
    key = unit.lower()
    if key not in _BW_UNITS:
        raise ValueError(f"cannot read the bandwidth unit in {text!r}; expected B/s, MB/s, GB/s, GiB/s, Mbps or Gbps")
    return float(m.group(1)) * _BW_UNITS[key]


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


def format_time(seconds: float) -> str:
    """A time with a readable unit: 3.2e-6 -> "3.20 us"."""
    if seconds == 0:
        return "0 s"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


def format_bandwidth(bytes_per_s: float) -> str:
    return f"{bytes_per_s / 1e9:.3g} GB/s"
