"""One link model for every part of collectives: latency and bandwidth, their units, and named presets.

A point-to-point link is two numbers, the alpha-beta model's: a message of m bytes takes
``latency + m / bandwidth``. The link emulation (:mod:`collectives.emulation`) stretches real
steps to that time, the simulator (:mod:`collectives.sim`) builds its networks from such links,
and ``algorithm="auto"`` (:mod:`collectives.select`) predicts with the same alpha and beta. A
user names a link the same way everywhere (``--link`` of every command, ``link=`` of every
function): a preset name (``ib-hdr``) or ``BANDWIDTH,LATENCY`` (``10Gbps,20us``, ``25GB/s,2us``;
b = bits, B = bytes), read by :func:`parse_link`.

This module is the bottom of the package: plain Python, no numpy, no MPI, no simulator.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

# The one unit table. Bandwidth prefixes are decimal (as network rates are quoted) except the
# binary "Ki", "Mi", "Gi", "Ti"; the case of b/B decides bits or bytes.
TIME_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "µs": 1e6, "ns": 1e9}  # divisors: 20us is 20 / 1e6 exactly rounded
RATE_PREFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_TIME = re.compile(NUMBER + r"\s*([a-zµ]*)")
_RATE = re.compile(NUMBER + r"\s*(?:([kKmMgGtT]i?)?(b|B)(?:ps|/s))?")


def parse_time(text: str | float) -> float:
    """Seconds from "2us", "1.5 ms", "3e-6" (a bare number is seconds)."""
    if isinstance(text, (int, float)):
        return float(text)
    m = _TIME.fullmatch(str(text).strip().lower())
    unit = m.group(2) if m else None
    if m is None or (unit and unit not in TIME_UNITS):
        raise ValueError(f"cannot read the time {text!r}; expected a number with a unit such as 2us, 1.5ms, 3e-6s")
    return float(m.group(1)) / TIME_UNITS[unit or "s"]


def parse_bandwidth(text: str | float) -> float:
    """Bytes per second from "12.5GB/s" or "12.5GBps" (bytes), "100Gbps" or "100Gb/s" (bits), "25e9" (bytes/s)."""
    if isinstance(text, (int, float)):
        return float(text)
    m = _RATE.fullmatch(str(text).strip())
    if m is None:
        raise ValueError(
            f"cannot read the bandwidth {text!r}; expected e.g. 12.5GB/s or 12.5GBps (bytes), 100Gbps or 100Gb/s"
            " (bits), 1GiB/s, or a bare number of bytes per second"
        )
    value = float(m.group(1)) * RATE_PREFIXES[(m.group(2) or "").lower()]
    return value / 8 if m.group(3) == "b" else value


def format_time(seconds: float) -> str:
    """A time with a readable unit: 3.2e-6 -> "3.2 us"."""
    if seconds == 0:
        return "0 s"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


def format_bandwidth(bytes_per_s: float) -> str:
    return "inf" if math.isinf(bytes_per_s) else f"{bytes_per_s / 1e9:.3g} GB/s"


@dataclass(frozen=True)
class Link:
    """A point-to-point link: ``latency`` in seconds, ``bandwidth`` in bytes per second (per direction).

    In the simulator's topologies a link is one cable or switch port and ``latency`` is per hop;
    as a whole path (emulation, ``select``, a ``--link`` spec) it is the end-to-end latency of a
    message. ``name`` and ``source`` say where the numbers come from (a preset, a user's spec).
    """

    latency: float
    bandwidth: float
    name: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.latency >= 1 and not self.bandwidth >= 1:
            # Link(bandwidth, latency) was the simulator's old argument order: say so instead of modelling nonsense
            raise ValueError(
                f"Link(latency={self.latency!r}, bandwidth={self.bandwidth!r}) looks swapped: Link takes the latency "
                "(seconds) first, then the bandwidth (bytes/s); pass them by keyword"
            )
        if not self.bandwidth > 0:
            raise ValueError(f"a link's bandwidth must be positive (bytes/s), got {self.bandwidth!r}")
        if not (self.latency >= 0 and math.isfinite(self.latency)):
            raise ValueError(f"a link's latency must be a non-negative number of seconds, got {self.latency!r}")

    @property
    def per_byte(self) -> float:
        """Seconds per byte (beta): 0 for an infinitely fast link."""
        return 1.0 / self.bandwidth

    def message_time(self, nbytes: float) -> float:
        """Seconds a message of ``nbytes`` takes: latency + nbytes / bandwidth."""
        return self.latency + nbytes / self.bandwidth

    def scaled(self, factor: float) -> Link:
        """The same link ``factor`` times as wide (a fat-tree uplink carrying several flows)."""
        return Link(self.latency, self.bandwidth * factor, self.name, self.source)

    def describe(self) -> str:
        return f"{format_bandwidth(self.bandwidth)}, {format_time(self.latency)}"

    def __str__(self) -> str:
        rate = "inf" if math.isinf(self.bandwidth) else f"{self.bandwidth * 8 / 1e9:g} Gb/s"
        text = f"{rate} ({format_bandwidth(self.bandwidth)}), {format_time(self.latency)}"
        return f"{self.name}: {text}" if self.name else text


@dataclass(frozen=True)
class Preset:
    """A kind of interconnect with its sources.

    The simulator needs the latency split: ``hop_latency`` per link crossed and ``alpha`` at the
    end points (software, adapter), chosen so that one switch (two links) gives the typical
    end-to-end figure. :attr:`link` is that end-to-end view, used wherever a preset names a link.
    """

    name: str
    bandwidth: float
    hop_latency: float
    alpha: float
    summary: str
    source: str

    @property
    def link(self) -> Link:
        """The preset as one point-to-point link: a message across one switch (two hops)."""
        return Link(self.alpha + 2 * self.hop_latency, self.bandwidth, self.name, self.source)

    @property
    def hop(self) -> Link:
        """One link of a network built of this interconnect (latency per hop)."""
        return Link(self.hop_latency, self.bandwidth, self.name, self.source)


GB = 1e9

# Bandwidths are per direction, from the published signalling or data rate (real transfers reach
# roughly 90-97% of them). Latencies are approximate, a few hundred nanoseconds either way; measure
# yours with ``python -m collectives.sim calibrate``.
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "ib-edr",
            100e9 / 8,
            90e-9,
            0.8e-6,
            "InfiniBand EDR 4x, 100 Gb/s (12.5 GB/s per direction)",
            "IBTA InfiniBand roadmap (EDR = 100 Gb/s for a 4x port); NVIDIA/Mellanox SB7800 switch "
            "datasheet (90 ns port-to-port); ~1 us MPI ping-pong latency (OSU osu_latency on ConnectX-5)",
        ),
        Preset(
            "ib-hdr",
            200e9 / 8,
            130e-9,
            0.8e-6,
            "InfiniBand HDR 4x, 200 Gb/s (25 GB/s per direction)",
            "IBTA InfiniBand roadmap (HDR = 200 Gb/s); NVIDIA Quantum QM8700 switch datasheet (130 ns)",
        ),
        Preset(
            "ib-ndr",
            400e9 / 8,
            130e-9,
            0.8e-6,
            "InfiniBand NDR 4x, 400 Gb/s (50 GB/s per direction)",
            "IBTA InfiniBand roadmap (NDR = 400 Gb/s); NVIDIA ConnectX-7 / Quantum-2 (switch latency assumed as HDR's)",
        ),
        Preset(
            "nvlink3",
            300 * GB,
            0.3e-6,
            1.5e-6,
            "NVLink 3 via NVSwitch (A100 SXM): 300 GB/s per direction per GPU",
            "NVIDIA A100 datasheet (600 GB/s total NVLink bandwidth = 12 links x 25 GB/s each way); "
            "latency from NCCL's per-hop NVLink latencies (src/graph/tuning.cc), approximate",
        ),
        Preset(
            "nvlink4",
            450 * GB,
            0.3e-6,
            1.5e-6,
            "NVLink 4 via NVSwitch (H100 SXM): 450 GB/s per direction per GPU",
            "NVIDIA H100 datasheet (900 GB/s total NVLink bandwidth = 18 links x 25 GB/s each way); "
            "latency as nvlink3, approximate",
        ),
        Preset(
            "pcie4",
            16e9 * 16 * 128 / 130 / 8,
            0.5e-6,
            1.0e-6,
            "PCIe 4.0 x16: 31.5 GB/s per direction",
            "PCI-SIG PCIe 4.0 base specification: 16 GT/s per lane, 128b/130b encoding, 16 lanes",
        ),
        Preset(
            "pcie5",
            32e9 * 16 * 128 / 130 / 8,
            0.5e-6,
            1.0e-6,
            "PCIe 5.0 x16: 63 GB/s per direction",
            "PCI-SIG PCIe 5.0 base specification: 32 GT/s per lane, 128b/130b encoding, 16 lanes",
        ),
    ]
}

ALIASES = {
    "ib-100": "ib-edr",
    "ib-100g": "ib-edr",
    "ib-200": "ib-hdr",
    "ib-200g": "ib-hdr",
    "ib-400": "ib-ndr",
    "ib-400g": "ib-ndr",
    "nvlink": "nvlink4",
    "pcie": "pcie4",
}

DEFAULT_LINK = "ib-edr"  # what the simulator assumes when no link is named


def preset_names() -> list[str]:
    return sorted(PRESETS) + sorted(ALIASES)


def get_preset(name: str) -> Preset:
    """A link preset by name or alias; the error lists the choices."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in PRESETS:
        raise ValueError(f"unknown link preset {name!r}; expected one of {preset_names()}")
    return PRESETS[key]


def parse_link(spec: str | Link) -> Link:
    """A Link from a preset name (``ib-hdr``) or ``BANDWIDTH,LATENCY`` (``10Gbps,20us``, ``25GB/s,2us``).

    b = bits, B = bytes; a bare number is bytes per second or seconds. A Link is returned as is.
    """
    if isinstance(spec, Link):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"a link is a Link or a string such as '10Gbps,20us', got {type(spec).__name__}")
    return _parse_text(spec)


@lru_cache(maxsize=64)  # a training loop passes the same spec on every call
def _parse_text(spec: str) -> Link:
    text = spec.strip()
    if "," not in text:
        key = ALIASES.get(text.lower(), text.lower())
        if key in PRESETS:
            return PRESETS[key].link
        raise ValueError(
            f"cannot read the link {spec!r}: expected BANDWIDTH,LATENCY such as '10Gbps,20us' or '25GB/s,2us'"
            f" (b = bits, B = bytes) or a preset name, one of {preset_names()}"
        )
    rate, _, delay = (part.strip() for part in text.partition(","))
    try:
        if "," in delay or not rate[-1:].isalpha() or not delay[-1:].isalpha():
            raise ValueError("expected two fields, each with its unit")
        return Link(parse_time(delay), parse_bandwidth(rate), source=f"--link {text}")
    except ValueError as e:
        raise ValueError(
            f"cannot read the link {spec!r} ({e}): expected BANDWIDTH,LATENCY such as '10Gbps,20us' or"
            f" '25GB/s,2us' (b = bits, B = bytes) or a preset name, one of {preset_names()}"
        ) from None


def presets_table() -> str:
    """Every link preset with its numbers and sources, for ``--list-presets`` and the docs."""
    lines = ["links (bandwidth per direction, latency per hop, end-point alpha, end to end across one switch):"]
    for p in PRESETS.values():
        lines.append(
            f"  {p.name:8s} {p.bandwidth / GB:7.1f} GB/s  {p.hop_latency * 1e9:5.0f} ns/hop  "
            f"alpha {p.alpha * 1e6:.1f} us  ({format_time(p.link.latency)} end to end)  {p.summary}"
        )
        lines.append(f"           source: {p.source}")
    lines.append("aliases: " + ", ".join(f"{a} = {b}" for a, b in ALIASES.items()))
    lines.append("or any BANDWIDTH,LATENCY: 10Gbps,20us (b = bits) or 25GB/s,2us (B = bytes)")
    return "\n".join(lines)
