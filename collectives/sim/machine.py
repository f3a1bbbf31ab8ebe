"""A machine to predict on: a cost model plus a topology recipe, built for any number of ranks.

The command line and the sweep describe machines as text (a topology spec, link and device
presets, overrides, or a calibrated profile); :class:`Machine` turns that into the
:class:`CostModel` and :class:`Topology` the simulator needs for a given p.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectives.link import DEFAULT_LINK, PRESETS, Link, parse_link
from collectives.sim.cost_model import CostModel
from collectives.sim.presets import get_device
from collectives.sim.topology import FullyConnected, Topology, make_topology
from collectives.sim.units import parse_bandwidth, parse_time

MODELS = ("textbook", "abg", "loggp")


@dataclass
class Machine:
    """What to simulate on. ``by_ranks`` holds calibrated models for particular rank counts."""

    model: CostModel
    topology: str = "full"
    link: Link | None = None  # network links (latency per hop); None: the model's beta, fully connected
    intra: Link | None = None  # inside a node (hierarchical topologies)
    by_ranks: dict[int, CostModel] = field(default_factory=dict)
    source: str = ""
    cores: int | None = None  # usable cores where the profile was measured (None: not recorded)

    def model_for(self, p: int) -> CostModel:
        """The calibrated model for p ranks if there is one, else the nearest rank count's, else the model.

        When the profile knows how many cores it was measured on, the nearest model is stretched
        by the change in ranks per core (``core_share(p) / core_share(q)``, :mod:`collectives.sim.trust`):
        4 ranks on 2 cores run each rank half the time, which a model measured at 2 ranks does not know.
        """
        if not self.by_ranks:
            return self.model
        nearest = min(self.by_ranks, key=lambda q: (abs(q - p), q))
        model = self.by_ranks[nearest]
        if self.cores:
            from collectives.sim.trust import core_share

            model = model.scaled(core_share(p, self.cores) / core_share(nearest, self.cores))
        return model

    def build(self, p: int) -> tuple[CostModel, Topology | None]:
        """(cost model, topology) for p ranks; topology None means the model's own fully connected network."""
        model = self.model_for(p)
        if self.link is None and self.topology in ("full", "fully-connected"):
            return model, None
        link = self.link or Link(0.0, model.link.bandwidth)  # alpha is the model's
        if self.topology in ("full", "fully-connected"):
            return model, FullyConnected(p, link)
        return model, make_topology(self.topology, p, link, self.intra)

    def bottleneck_beta(self) -> float:
        """Seconds per byte of the slowest link type: the beta that closed forms should use."""
        if self.link is not None:
            return self.link.per_byte
        return self.model.beta

    def describe(self, p: int | None = None) -> str:
        model = self.model_for(p) if p else self.model
        text = model.describe()
        if self.link is not None:
            text += f"; links {self.link.describe()}"
        if self.intra is not None:
            text += f"; intra-node {self.intra.describe()}"
        return text + (f" [{self.source}]" if self.source else "")


def _seconds_per_byte(text: str | float) -> float:
    """A per-byte cost given as a speed ("4GB/s") or directly in seconds per byte ("2.5e-10")."""
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip()
    if "/" in s or s.lower().endswith("bps"):
        return 1.0 / parse_bandwidth(s)
    return float(s)


def load_profile(path: str | Path) -> dict[str, Any]:
    """A profile written by ``calibrate``; the error says what is missing."""
    data = json.loads(Path(path).read_text())
    if "model" not in data:
        raise ValueError(f"{path}: not a calibration profile (no 'model' entry); write one with 'calibrate'")
    return data


def network_link(link: str | Link) -> tuple[float, Link]:
    """(alpha, the link per hop) of a ``--link`` value, so that it means what it means everywhere.

    A preset splits its end-to-end latency into the end-point ``alpha`` and a latency per hop
    (its numbers, with sources); a ``BANDWIDTH,LATENCY`` spec or a user's Link is an end-to-end
    figure, so its whole latency is ``alpha`` and hops add none: on the default fully connected
    network a message then takes exactly ``latency + bytes / bandwidth``, as the emulation does.
    """
    parsed = parse_link(link)
    preset = PRESETS.get(parsed.name)
    if preset is not None and parsed == preset.link:
        return preset.alpha, preset.hop
    return parsed.latency, Link(0.0, parsed.bandwidth, parsed.name, parsed.source)


def intra_link(link: str | Link) -> Link:
    """The per-hop link inside a node: a preset's, or a spec's end-to-end latency over its two hops."""
    parsed = parse_link(link)
    preset = PRESETS.get(parsed.name)
    if preset is not None and parsed == preset.link:
        return preset.hop
    return Link(parsed.latency / 2, parsed.bandwidth, parsed.name, parsed.source)


def machine_from_options(
    *,
    model: str = "textbook",
    topology: str = "full",
    link: str | Link | None = None,
    intra: str | Link | None = None,
    device: str | None = None,
    alpha: str | float | None = None,
    latency: str | float | None = None,
    bandwidth: str | float | None = None,
    gamma: str | float | None = None,
    delta: str | float | None = None,
    o: str | float | None = None,
    g: str | float | None = None,
    profile: str | Path | None = None,
) -> Machine:
    """Assemble a machine from presets and overrides (the command line's options, by name).

    ``link`` is a preset name, ``BANDWIDTH,LATENCY`` or a :class:`~collectives.link.Link` (see
    :func:`network_link`). Precedence: explicit overrides, then the profile, then the link and
    device; defaults are the ``ib-edr`` link and the ``cpu`` device.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    by_ranks: dict[int, CostModel] = {}
    cores: int | None = None
    overrides: dict[str, Any] = {}
    if alpha is not None:
        overrides["alpha"] = parse_time(alpha)
    if gamma is not None:
        overrides["gamma"] = _seconds_per_byte(gamma)
        overrides["reduce_curve"] = None
    if delta is not None:
        overrides["delta"] = _seconds_per_byte(delta)
        overrides["copy_curve"] = None
    if profile is not None:
        # The calibrated models, curves and call cost included; the model kind and overrides on top.
        data = load_profile(profile)
        base_model = _with_kind(CostModel.from_dict(data["model"]), model, o, g).replace(**overrides)
        by_ranks = {
            int(p): _with_kind(CostModel.from_dict(m), model, o, g).replace(**overrides)
            for p, m in data.get("by_ranks", {}).items()
        }
        source = f"profile {Path(profile).name}"
        cores = data.get("cores")
        net: Link | None = None
        if bandwidth is not None or latency is not None:
            net = Link(
                parse_time(latency) if latency is not None else 0.0,
                parse_bandwidth(bandwidth) if bandwidth is not None else 1 / max(base_model.beta, 1e-30),
            )
    else:
        link_alpha, net = network_link(link if link is not None else DEFAULT_LINK)
        dev = get_device(device or "cpu")
        source = f"{net.name or net.source} + {dev.name}"
        if bandwidth is not None or latency is not None:
            net = Link(
                parse_time(latency) if latency is not None else net.latency,
                parse_bandwidth(bandwidth) if bandwidth is not None else net.bandwidth,
            )
        fields = {"alpha": link_alpha, "gamma": dev.gamma, "delta": dev.delta, **overrides}
        base_model = _model(model, fields["alpha"], net.per_byte, fields["gamma"], fields["delta"], o, g)
    if intra is None and topology.split(":")[0] in ("hier", "hierarchical", "cluster"):
        intra = "nvlink4"
    return Machine(base_model, topology, net, intra_link(intra) if intra else None, by_ranks, source, cores)


def _with_kind(m: CostModel, kind: str, o: Any, g: Any) -> CostModel:
    """A calibrated model switched to another kind, keeping its measured numbers."""
    if kind == "textbook":
        return m.replace(ports="one", eager_limit=0, sync_send=True)
    if kind == "abg":
        return m.replace(ports="multi", eager_limit=math.inf, sync_send=True)
    return m.replace(
        ports="nic",
        sync_send=False,
        o=parse_time(o) if o is not None else 0.0,
        g=parse_time(g) if g is not None else 0.0,
        name="LogGP",
    )


def _model(kind: str, a: float, b: float, c: float, d: float, o: Any, g: Any) -> CostModel:
    if kind == "textbook":
        return CostModel.textbook(a, b, c, d)
    if kind == "abg":
        return CostModel.alpha_beta_gamma(a, b, c, d)
    return CostModel.loggp(
        L=a, o=parse_time(o) if o is not None else 0.0, g=parse_time(g) if g is not None else 0.0, G=b, gamma=c, delta=d
    )


DEFAULT_MACHINE = machine_from_options()  # what the command line and simulate() assume when told nothing
