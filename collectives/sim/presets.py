"""Named link and device presets with their sources; every number can be overridden.

Bandwidths are per direction, in bytes per second, from the published signalling or data rate
(real transfers reach roughly 90-97% of them). ``latency`` is per link crossed (per hop);
``alpha`` is the end-point cost of a message (software, adapter) that the simulator adds once
per message, chosen so that one switch hop (two links) gives the typical end-to-end figure.
Latencies are approximate, a few hundred nanoseconds either way; measure yours with
``python -m collectives.sim calibrate`` or override them (``--alpha``, ``--latency``).
"""

from __future__ import annotations

from dataclasses import dataclass

from collectives.sim.topology import Link

GB = 1e9


@dataclass(frozen=True)
class Preset:
    """A kind of interconnect: its link, its per-message end-point latency, and where the numbers come from."""

    name: str
    link: Link
    alpha: float
    summary: str
    source: str


@dataclass(frozen=True)
class DevicePreset:
    """Where reductions run: seconds per byte reduced (``gamma``) and copied (``delta``)."""

    name: str
    gamma: float
    delta: float
    summary: str
    source: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "ib-edr",
            Link(100e9 / 8, 90e-9),
            0.8e-6,
            "InfiniBand EDR 4x, 100 Gb/s (12.5 GB/s per direction)",
            "IBTA InfiniBand roadmap (EDR = 100 Gb/s for a 4x port); NVIDIA/Mellanox SB7800 switch "
            "datasheet (90 ns port-to-port); ~1 us MPI ping-pong latency (OSU osu_latency on ConnectX-5)",
        ),
        Preset(
            "ib-hdr",
            Link(200e9 / 8, 130e-9),
            0.8e-6,
            "InfiniBand HDR 4x, 200 Gb/s (25 GB/s per direction)",
            "IBTA InfiniBand roadmap (HDR = 200 Gb/s); NVIDIA Quantum QM8700 switch datasheet (130 ns)",
        ),
        Preset(
            "ib-ndr",
            Link(400e9 / 8, 130e-9),
            0.8e-6,
            "InfiniBand NDR 4x, 400 Gb/s (50 GB/s per direction)",
            "IBTA InfiniBand roadmap (NDR = 400 Gb/s); NVIDIA ConnectX-7 / Quantum-2 (switch latency assumed as HDR's)",
        ),
        Preset(
            "nvlink3",
            Link(300 * GB, 0.3e-6),
            1.5e-6,
            "NVLink 3 via NVSwitch (A100 SXM): 300 GB/s per direction per GPU",
            "NVIDIA A100 datasheet (600 GB/s total NVLink bandwidth = 12 links x 25 GB/s each way); "
            "latency from NCCL's per-hop NVLink latencies (src/graph/tuning.cc), approximate",
        ),
        Preset(
            "nvlink4",
            Link(450 * GB, 0.3e-6),
            1.5e-6,
            "NVLink 4 via NVSwitch (H100 SXM): 450 GB/s per direction per GPU",
            "NVIDIA H100 datasheet (900 GB/s total NVLink bandwidth = 18 links x 25 GB/s each way); "
            "latency as nvlink3, approximate",
        ),
        Preset(
            "pcie4",
            Link(16e9 * 16 * 128 / 130 / 8, 0.5e-6),
            1.0e-6,
            "PCIe 4.0 x16: 31.5 GB/s per direction",
            "PCI-SIG PCIe 4.0 base specification: 16 GT/s per lane, 128b/130b encoding, 16 lanes",
        ),
        Preset(
            "pcie5",
            Link(32e9 * 16 * 128 / 130 / 8, 0.5e-6),
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


def get_preset(name: str) -> Preset:
    """A link preset by name or alias; the error lists the choices."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in PRESETS:
        raise ValueError(f"unknown link preset {name!r}; expected one of {sorted(PRESETS) + sorted(ALIASES)}")
    return PRESETS[key]


@dataclass(frozen=True)
class EndToEnd:
    """A preset seen as one point-to-point link: latency of a message across one switch, and bandwidth."""

    latency: float
    bandwidth: float


def link_preset(name: str) -> EndToEnd:
    """End-to-end alpha-beta figures of a preset (what collectives.emulation stretches steps to)."""
    preset = get_preset(name)
    return EndToEnd(preset.alpha + 2 * preset.link.latency, preset.link.bandwidth)


def get_device(name: str) -> DevicePreset:
    key = name.lower()
    if key not in DEVICES:
        raise ValueError(f"unknown device preset {name!r}; expected one of {sorted(DEVICES)}")
    return DEVICES[key]


def presets_table() -> str:
    """All presets with their numbers and sources, for ``--list-presets`` and the docs."""
    lines = ["links (bandwidth per direction, latency per hop, end-point alpha):"]
    for p in PRESETS.values():
        lines.append(
            f"  {p.name:8s} {p.link.bandwidth / GB:7.1f} GB/s  {p.link.latency * 1e9:5.0f} ns/hop  "
            f"alpha {p.alpha * 1e6:.1f} us  {p.summary}"
        )
        lines.append(f"           source: {p.source}")
    lines.append("aliases: " + ", ".join(f"{a} = {b}" for a, b in ALIASES.items()))
    lines.append("devices (reduction and copy speed):")
    for d in DEVICES.values():
        lines.append(
            f"  {d.name:8s} 1/gamma {1 / d.gamma / GB:7.1f} GB/s  1/delta {1 / d.delta / GB:7.1f} GB/s  {d.summary}"
        )
        lines.append(f"           source: {d.source}")
    return "\n".join(lines)
