"""Named link and device presets with their sources; every number can be overridden.

The link presets live at the bottom of the package, in :mod:`collectives.link` (the emulation
and ``--link`` of every command use them too), and are re-exported here. Each has a bandwidth
per direction, a ``hop_latency`` per link crossed and an end-point ``alpha`` per message that the
simulator adds once; its end-to-end :attr:`~collectives.link.Preset.link` crosses one switch.
Device presets (where reductions run) are the simulator's own. Override any number on the
command line (``--alpha``, ``--latency``, ``--bandwidth``, ``--gamma``) or measure yours with
``python -m collectives.sim calibrate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from collectives.link import ALIASES, GB, PRESETS, Link, Preset, get_preset
from collectives.link import presets_table as links_table


@dataclass(frozen=True)
class DevicePreset:
    """Where reductions run: seconds per byte reduced (``gamma``) and copied (``delta``)."""

    name: str
    gamma: float
    delta: float
    summary: str
    source: str


DEVICES: dict[str, DevicePreset] = {
    d.name: d
    for d in [
        DevicePreset(
            "a100",
            3 / (2039 * GB),
            2 / (2039 * GB),
            "A100 80GB SXM: a reduction streams 3 bytes of HBM per byte (read two, write one) at 2.0 TB/s",
            "NVIDIA A100 datasheet (2,039 GB/s HBM2e); memory-bound elementwise kernel assumed",
        ),
        DevicePreset(
            "h100",
            3 / (3350 * GB),
            2 / (3350 * GB),
            "H100 SXM: 3 bytes of HBM per reduced byte at 3.35 TB/s",
            "NVIDIA H100 datasheet (3.35 TB/s HBM3); memory-bound elementwise kernel assumed",
        ),
        DevicePreset(
            "cpu",
            1 / (4 * GB),
            1 / (8 * GB),
            "one CPU core adding arrays in numpy: about 4 GB/s reduced, 8 GB/s copied",
            "typical single-core numpy add/copyto on large arrays; run 'calibrate' for this machine's numbers",
        ),
    ]
}


def link_preset(name: str) -> Link:
    """A preset as one end-to-end link (what collectives.emulation stretches steps to)."""
    return get_preset(name).link


def get_device(name: str) -> DevicePreset:
    key = name.lower()
    if key not in DEVICES:
        raise ValueError(f"unknown device preset {name!r}; expected one of {sorted(DEVICES)}")
    return DEVICES[key]


def presets_table() -> str:
    """All link and device presets with their numbers and sources, for ``presets`` and the docs."""
    lines = [links_table(), "devices (reduction and copy speed):"]
    for d in DEVICES.values():
        lines.append(
            f"  {d.name:8s} 1/gamma {1 / d.gamma / GB:7.1f} GB/s  1/delta {1 / d.delta / GB:7.1f} GB/s  {d.summary}"
        )
        lines.append(f"           source: {d.source}")
    return "\n".join(lines)


__all__ = [
    "ALIASES",
    "DEVICES",
    "PRESETS",
    "DevicePreset",
    "Preset",
    "get_device",
    "get_preset",
    "link_preset",
    "presets_table",
]
