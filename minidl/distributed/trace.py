"""Training steps as a Chrome trace: every rank's compute phases and bucket allreduces, for Perfetto.

Each rank is a trace *process* with two tracks: the main thread (a ``step N`` slice around the
step's forward, backward, exposed communication and optimizer phases) and the communication
thread (one slice per bucket allreduce, with its bytes). The ranks' clocks are lined up by
measuring each rank's origin right after a barrier (the same origin the step timer uses), so
slices of different ranks compare to within the barrier's exit skew (tens of microseconds here).
Each rank keeps its slices in memory; at the end rank 0 gathers them and writes one file through
:mod:`collectives.trace`, the format's one implementation (re-exported here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collectives.trace import Trace, lanes

__all__ = ["COMM", "MAIN", "StepTracer", "Trace", "lanes", "split_exposed"]

MAIN, COMM = 0, 1  # thread ids of a rank's two tracks


def split_exposed(intervals: list[tuple[str, float, float]], exposed: float) -> list[tuple[str, float, float]]:
    """A step's (phase, start, end) intervals with the last ``exposed`` seconds of its last backward
    as an ``exposed_comm`` interval: backward's final wait is communication, not computation."""
    out = list(intervals)
    last = max((i for i, iv in enumerate(out) if iv[0] == "backward"), default=None)
    if last is not None and exposed > 0:
        _, start, end = out[last]
        cut = max(start, end - exposed)
        out[last] = ("backward", start, cut)
        out.append(("exposed_comm", cut, end))
    return out


class StepTracer:
    """Collects this rank's slices for the first ``max_steps`` steps; ``write`` makes rank 0's file.

    ``origin`` is this rank's ``time.perf_counter()`` taken right after a barrier: every time in
    the trace is seconds since it.
    """

    def __init__(self, origin: float, max_steps: int = 20) -> None:
        if max_steps < 1:
            raise ValueError(f"StepTracer: max_steps must be at least 1, got {max_steps}")
        self.origin = origin
        self.max_steps = max_steps
        self.steps = 0
        self.slices: list[tuple[int, str, float, float, dict[str, Any]]] = []  # (thread id, name, start, end, args)

    @property
    def full(self) -> bool:
        return self.steps >= self.max_steps

    def record(self, step: int, phases: list[tuple[str, float, float]], phases_origin: float, ddp: Any) -> None:
        """Add step ``step``: ``phases`` as ``StepTimer`` keeps them (seconds since ``phases_origin``),
        with backward's final wait split out, and ``ddp``'s bucket intervals (absolute perf_counter)."""
        if self.full:
            return
        self.steps += 1
        shift = phases_origin - self.origin
        exposed = ddp.stats.exposed_seconds if ddp.world_size > 1 else 0.0
        phases = [(name, s + shift, e + shift) for name, s, e in split_exposed(phases, exposed)]
        if phases:
            start, end = min(s for _, s, _ in phases), max(e for _, _, e in phases)
            self.slices.append((MAIN, f"step {step}", start, end, {"step": step}))
        self.slices += [(MAIN, name, s, e, {"step": step}) for name, s, e in phases]
        for index, s, e in ddp.stats.intervals:
            bucket = ddp.buckets[index]
            args = {"step": step, "bucket": index, "bytes": bucket.nbytes, "parameters": len(bucket.params)}
            self.slices.append((COMM, f"bucket {index}", s - self.origin, e - self.origin, args))

    def write(self, path: str | Path, comm: Any, comm_thread: str = "comm thread", **metadata: Any) -> Path | None:
        """Gather every rank's slices to rank 0, which writes the trace to ``path`` (returned on rank 0 only).

        Collective: every rank of ``comm`` must call it.
        """
        gathered = comm.gather(self.slices, root=0)  # once per run: a pickle of a few thousand tuples is fine
        if comm.Get_rank() != 0:
            return None
        trace = Trace(**metadata, ranks=len(gathered), steps=self.steps, clock="seconds since a barrier on every rank")
        for rank, slices in enumerate(gathered):
            trace.process(rank, f"rank {rank}", order=rank)
            trace.thread(rank, MAIN, "main thread")
            if any(tid == COMM for tid, *_ in slices):
                trace.thread(rank, COMM, comm_thread)
            for tid, name, start, end, args in slices:
                trace.slice(rank, tid, name, start, end, cat="comm" if tid == COMM else "compute", args=args)
        return trace.write(path)
