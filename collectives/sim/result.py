"""What a simulation reports: predicted time, nccl-tests bandwidths, counters, timeline, outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from collectives.sim.units import format_bandwidth, format_size, format_time

if TYPE_CHECKING:
    from collectives.sim.scheduler import Simulator


def bus_factor(p: int) -> float:
    """nccl-tests' allreduce correction: busbw = algbw * 2(p-1)/p (doc/PERFORMANCE.md)."""
    return 2 * (p - 1) / p if p > 1 else 0.0


@dataclass
class SimResult:
    """One simulated collective. Times are seconds of virtual time; all ranks start at 0."""

    p: int
    time: float  # when the last rank returned: the predicted collective time
    finish: list[float]  # per rank
    sent_msgs: list[int]
    sent_bytes: list[int]
    recv_msgs: list[int]
    recv_bytes: list[int]
    reduce_bytes: list[int]
    reduce_calls: list[int]
    copy_bytes: list[int]
    steps: int  # steps yielded, all ranks together
    wall: float  # seconds the simulation itself took (wall clock)
    links: list[tuple[str, int, int, float]]  # (name, messages, bytes, busy seconds) per used link
    events: list[tuple[str, int, int, float, float, int]] | None
    buffers: list[Any] = field(default_factory=list)
    nbytes: int = 0  # message size per rank (set by simulate)
    algorithm: str = ""
    model: str = ""
    topology: str = ""
    cpu: float = 0.0  # CPU seconds the simulation took (what it costs on a machine shared with others)
    engine: str = "reference"  # "fast" (recorded schedule, compiled replay) or "reference (... why not fast)"

    @classmethod
    def from_simulator(cls, sim: Simulator, finish: list[float], steps: int, wall: float) -> SimResult:
        return cls(
            p=sim.p,
            time=max(finish) if finish else 0.0,
            finish=finish,
            sent_msgs=sim.sent_msgs,
            sent_bytes=sim.sent_bytes,
            recv_msgs=sim.recv_msgs,
            recv_bytes=sim.recv_bytes,
            reduce_bytes=sim.reduce_bytes,
            reduce_calls=sim.reduce_calls,
            copy_bytes=sim.copy_bytes,
            steps=steps,
            wall=wall,
            links=sim.network.link_stats(),
            events=sim.events,
            model=sim.model.describe(),
            topology=sim.topology.describe(),
        )

    @property
    def messages(self) -> int:
        return sum(self.sent_msgs)

    @property
    def algbw(self) -> float:
        """Bytes per second as the user sees it: message size / time (nccl-tests' algbw)."""
        return self.nbytes / self.time if self.time > 0 else float("inf")

    @property
    def busbw(self) -> float:
        """algbw * 2(p-1)/p: comparable across rank counts and to the link bandwidth."""
        return self.algbw * bus_factor(self.p)

    def busiest(self) -> dict[str, float]:
        """The busiest rank's totals: the numbers a closed-form Cost declares."""
        return {
            "messages_sent": max(self.sent_msgs, default=0),
            "bytes_sent": max(self.sent_bytes, default=0),
            "messages_received": max(self.recv_msgs, default=0),
            "bytes_received": max(self.recv_bytes, default=0),
            "bytes_reduced": max(self.reduce_bytes, default=0),
            "bytes_copied": max(self.copy_bytes, default=0),
        }

    def summary(self) -> str:
        b = self.busiest()
        bw = "" if self.time == 0 else f", algbw {format_bandwidth(self.algbw)}, busbw {format_bandwidth(self.busbw)}"
        lines = [
            f"{self.algorithm or 'algorithm'} on {self.p} ranks, {format_size(self.nbytes)}B per rank: "
            f"predicted {format_time(self.time)}{bw}",
            f"  model: {self.model}",
            f"  network: {self.topology}",
            f"  busiest rank: sends {b['messages_sent']:.0f} messages / {format_size(b['bytes_sent'])}B, "
            f"receives {b['messages_received']:.0f} / {format_size(b['bytes_received'])}B, "
            f"reduces {format_size(b['bytes_reduced'])}B",
            f"  simulated {self.messages} messages in {self.wall:.2f} s ({self.cpu:.2f} s of CPU), "
            f"{self.engine} engine",
        ]
        return "\n".join(lines)
