"""The host side of the time model: what a message, a byte sent, reduced or copied costs.

Two classic models share one class:

* **alpha-beta-gamma** (Hockney; Thakur, Rabenseifner and Gropp 2005): a message of m bytes
  takes ``alpha + m*beta``; reducing m bytes takes ``m*gamma``. A send completes when its
  message has been delivered, and a rank may have any number of messages in flight (each on its
  own link), which is what the closed-form costs of the algorithms assume.
* **LogGP** (Alexandrov et al. 1995): each message costs the CPU ``o`` at both ends, the network
  ``L`` of latency and ``G`` per byte, and a rank's network interface injects one message at a
  time, at least ``g`` apart. A send completes when its last byte has left.

The links a message crosses, and so ``beta`` on anything but the default fully connected
network, come from the topology (:mod:`collectives.sim.topology`); ``alpha`` is then the
per-message software and interface latency added to the links' own latencies.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from itertools import pairwise
from typing import Any

from collectives.link import Link, format_time, parse_link

PORTS = {
    "multi": "a rank moves any number of messages at once, each on its own route (the fully connected "
    "network's links never collide between different pairs)",
    "one": "one send and one receive at a time per rank, each held for the whole message time "
    "(alpha + m*beta): the single-port model behind round-counting formulas; a rank's send port and "
    "receive port each serve their messages in turn",
    "nic": "LogGP: a rank's interface injects one message at a time, m*G long and at least g apart",
}


@dataclass(frozen=True)
class CostModel:
    """Per-message and per-byte costs charged to the ranks' virtual clocks (seconds)."""

    alpha: float = 0.0  # latency of every message (s), on top of the links' own latency
    beta: float = 0.0  # transfer time per byte (s/B) of the default fully connected network
    gamma: float = 0.0  # reduction time per byte of incoming data (s/B)
    delta: float = 0.0  # local copy time per byte (t.copy) (s/B)
    o: float = 0.0  # LogGP: CPU overhead per message, at the sender and again at the receiver (s)
    g: float = 0.0  # LogGP: minimum gap between two message injections by one rank (s)
    ports: str = "multi"  # "multi", "one" or "nic": how many messages a rank moves at once (see PORTS)
    sync_send: bool = True  # a send completes when delivered (Hockney) rather than when injected
    eager_limit: float = math.inf  # larger messages start only once the receive is posted (rendezvous)
    name: str = "alpha-beta-gamma"
    # Measured refinements (written by ``calibrate``; all optional):
    call_overhead: float = 0.0  # CPU seconds per transport call (isend, irecv, wait, sendrecv, reduce, ...)
    message_curve: tuple[tuple[int, float], ...] | None = None  # (bytes, seconds) of one message end to end
    reduce_curve: tuple[tuple[int, float], ...] | None = None  # (bytes, seconds) of one t.reduce
    copy_curve: tuple[tuple[int, float], ...] | None = None  # (bytes, seconds) of one t.copy

    def __post_init__(self) -> None:
        if self.ports not in PORTS:
            raise ValueError(f"CostModel.ports must be one of {sorted(PORTS)}, got {self.ports!r}")
        for field in ("alpha", "beta", "gamma", "delta", "o", "g", "eager_limit", "call_overhead"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
                raise ValueError(f"CostModel.{field} must be a non-negative number of seconds, got {value!r}")

    @classmethod
    def alpha_beta_gamma(cls, alpha: float, beta: float, gamma: float = 0.0, delta: float = 0.0) -> CostModel:
        """Hockney's model plus a reduction term: ``alpha + m*beta`` per message, ``m*gamma`` per reduce."""
        return cls(alpha=alpha, beta=beta, gamma=gamma, delta=delta, name="alpha-beta-gamma")

    @classmethod
    def textbook(cls, alpha: float, beta: float, gamma: float = 0.0, delta: float = 0.0) -> CostModel:
        """The model closed-form costs are derived in (Thakur, Rabenseifner and Gropp, 2005).

        alpha-beta-gamma with one send and one receive at a time per rank, each message holding
        both ends for ``alpha + m*beta`` from the moment both sides have posted it.
        """
        return cls(alpha=alpha, beta=beta, gamma=gamma, delta=delta, ports="one", eager_limit=0, name="textbook")

    @classmethod
    def loggp(cls, L: float, o: float, g: float, G: float, gamma: float = 0.0, delta: float = 0.0) -> CostModel:
        """LogGP: latency ``L``, overhead ``o``, gap ``g``, gap per byte ``G`` (plus ``gamma`` to reduce).

        A message of m bytes costs ``o + m*G + L + o`` end to end; we charge ``m*G`` where the paper
        has ``(m-1)*G`` so that an empty message has no bandwidth term.
        """
        return cls(alpha=L, beta=G, gamma=gamma, delta=delta, o=o, g=g, ports="nic", sync_send=False, name="LogGP")

    @classmethod
    def from_link(cls, link: Link | str, gamma: float = 0.0, delta: float = 0.0, kind: str = "textbook") -> CostModel:
        """The model of messages over ``link`` (a Link, a preset name or "10Gbps,20us"): its latency is
        alpha, its bandwidth 1/beta; ``kind`` is "textbook" or "abg" (:meth:`alpha_beta_gamma`)."""
        kinds = {"textbook": cls.textbook, "abg": cls.alpha_beta_gamma}
        if kind not in kinds:
            raise ValueError(f"CostModel.from_link: kind must be one of {sorted(kinds)}, got {kind!r}")
        link = parse_link(link)
        return kinds[kind](link.latency, link.per_byte, gamma, delta)

    @property
    def link(self) -> Link:
        """alpha and beta as a Link: a message between neighbours of the default network, LogGP's ``o`` aside."""
        return Link(self.alpha, math.inf if self.beta == 0 else 1.0 / self.beta, self.name)

    def replace(self, **changes: Any) -> CostModel:
        return replace(self, **changes)

    def scaled(self, factor: float) -> CostModel:
        """This model with every time cost stretched by ``factor`` (ranks sharing cores: see
        :mod:`collectives.sim.trust`); the eager limit and the model's kind stay."""
        from collectives.sim.trust import scale_model

        if not factor > 0:
            raise ValueError(f"CostModel.scaled: the factor must be positive, got {factor!r}")
        return self if factor == 1 else CostModel.from_dict(scale_model(self.to_dict(), factor))

    @property
    def message_latency(self) -> float:
        """Time of an empty message between neighbours on the default network, end to end."""
        return self.alpha + 2 * self.o

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if math.isinf(d["eager_limit"]):
            d["eager_limit"] = None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CostModel:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if known.get("eager_limit") is None:
            known["eager_limit"] = math.inf
        for key in ("message_curve", "reduce_curve", "copy_curve"):
            if known.get(key) is not None:
                known[key] = tuple((int(m), float(t)) for m, t in known[key])
        return cls(**known)

    def describe(self) -> str:
        bw = "inf" if self.beta == 0 else f"{1 / self.beta / 1e9:.3g} GB/s"
        parts = [f"{self.name}: alpha={format_time(self.alpha)}", f"1/beta={bw}"]
        if self.gamma:
            parts.append(f"1/gamma={1 / self.gamma / 1e9:.3g} GB/s")
        if self.delta:
            parts.append(f"1/delta={1 / self.delta / 1e9:.3g} GB/s")
        if self.o or self.g:
            parts.append(f"o={format_time(self.o)} g={format_time(self.g)}")
        if self.ports != "multi":
            parts.append(f"{self.ports}-port")
        if self.call_overhead:
            parts.append(f"{format_time(self.call_overhead)}/call")
        if self.message_curve or self.reduce_curve:
            parts.append("measured curves")
        return ", ".join(parts)


def curve_time(curve: tuple[tuple[int, float], ...], nbytes: float) -> float:
    """Seconds for ``nbytes`` read off a measured (bytes, seconds) curve: linear between points,
    extended beyond the largest with the slope of the last segment."""
    if nbytes <= curve[0][0]:
        return curve[0][1]
    for (m0, t0), (m1, t1) in pairwise(curve):
        if nbytes <= m1:
            return t0 + (t1 - t0) * (nbytes - m0) / (m1 - m0)
    (m0, t0), (m1, t1) = curve[-2], curve[-1]
    return t1 + (t1 - t0) / (m1 - m0) * (nbytes - m1)
