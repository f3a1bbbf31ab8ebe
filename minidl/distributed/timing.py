"""Per-step timing of data-parallel training: where a step's time goes, and how much
communication overlap hid.

A step is split into forward, backward (computation only), exposed communication (backward's
wait for the allreduces still in flight at its end), and the optimizer. Communication itself
runs on another thread, partly hidden behind backward; its total time and the hidden fraction
(overlap efficiency = 1 - exposed / total) are the numbers that show whether overlap works.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

PHASES = ("forward", "backward", "exposed_comm", "optimizer")


@dataclass
class StepTiming:
    """Seconds spent in each phase of one training step (all measured on this rank)."""

    forward: float = 0.0
    backward: float = 0.0  # computation only: the end-of-backward wait is in exposed_comm
    exposed_comm: float = 0.0
    optimizer: float = 0.0
    comm: float = 0.0  # total allreduce time on the comm thread, hidden or not
    samples: int = 0
    intervals: list[tuple[str, float, float]] = field(default_factory=list)  # (label, start, end) for timelines

    @property
    def total(self) -> float:
        return self.forward + self.backward + self.exposed_comm + self.optimizer

    @property
    def overlap_efficiency(self) -> float:
        return max(0.0, 1.0 - self.exposed_comm / self.comm) if self.comm > 0 else float("nan")

    def as_dict(self) -> dict[str, float]:
        d = asdict(self)
        d.pop("intervals")
        d["total"] = self.total
        d["overlap_efficiency"] = self.overlap_efficiency
        return d


class StepTimer:
    """Measures the phases of a step: ``with timer.phase("forward"): ...``.

    Interval times are relative to ``origin`` so that ranks' timelines line up when the
    ranks start their clocks together (after a barrier).
    """

    def __init__(self, origin: float | None = None, keep_intervals: bool = False) -> None:
        self.origin = time.perf_counter() if origin is None else origin
        self.keep_intervals = keep_intervals
        self.current = StepTiming()

    def start_step(self) -> StepTiming:
        self.current = StepTiming()
        return self.current

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; expected one of {PHASES}")
        start = time.perf_counter()
        try:
            yield
        finally:
            end = time.perf_counter()
            setattr(self.current, name, getattr(self.current, name) + end - start)
            if self.keep_intervals:
                self.current.intervals.append((name, start - self.origin, end - self.origin))


def summarize(steps: list[StepTiming]) -> dict[str, float]:
    """Totals over steps, plus throughput and the overall overlap efficiency."""
    out = {name: sum(getattr(s, name) for s in steps) for name in (*PHASES, "comm")}
    out["samples"] = sum(s.samples for s in steps)
    out["total"] = sum(s.total for s in steps)
    out["samples_per_second"] = out["samples"] / out["total"] if out["total"] > 0 else float("nan")
    out["overlap_efficiency"] = max(0.0, 1.0 - out["exposed_comm"] / out["comm"]) if out["comm"] > 0 else float("nan")
    return out
