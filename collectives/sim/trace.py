"""A simulated collective as a Chrome trace: one group of tracks per rank, every message and reduction a slice.

Each rank (a trace *process*) has lanes for what it sends, receives and computes; a message is a
send slice on its source and a receive slice on its destination, with its bytes and peer in the
slice's arguments, so Perfetto's selection sums show bytes per rank and per phase. Large runs are
sampled as the PNG timeline samples them (ranks 0 and p-1 always kept): a trace of every rank of a
4096-rank ring would hold tens of millions of slices that no viewer opens; the file's metadata and
the caller's message say which ranks were kept, and a counter track above them (process ``p``,
"all ranks") shows how many of *all* the ranks are sending, receiving and reducing over time,
sampled at COUNTER_POINTS instants, as the PNG's summary panel does.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from collectives.sim.result import SimResult
from collectives.sim.timeline import busy_counts, intervals, sample_ranks
from collectives.trace import Trace, lanes

MAX_RANKS = 64  # ranks given tracks before sampling
MAX_SLICES = 400_000  # slices in one file (about 40 MB of JSON); fewer ranks are kept beyond

KINDS = ("send", "recv", "compute")  # the lanes of a rank, top to bottom
LANES_PER_KIND = 1000  # thread ids: kind k's lane j is k * LANES_PER_KIND + j
COUNTER_POINTS = 2000  # samples of the all-ranks counters of a sampled trace
BUSY = (("send", "sending"), ("recv", "receiving"), ("reduce", "reducing"))


def kept_ranks(result: SimResult, max_ranks: int = MAX_RANKS, max_slices: int = MAX_SLICES) -> list[int]:
    """The ranks that get tracks: all of them if they fit both caps, else an even sample that does."""
    per_rank: Counter[int] = Counter()
    for kind, rank, peer, *_ in _events(result):
        per_rank[rank] += 1
        if kind == "msg":
            per_rank[peer] += 1
    rows = min(result.p, max_ranks)
    while True:
        ranks = sample_ranks(result.p, rows)
        if sum(per_rank[r] for r in ranks) <= max_slices or rows <= 2:
            return ranks
        rows = max(2, rows // 2)


def sim_trace(result: SimResult, max_ranks: int = MAX_RANKS, max_slices: int = MAX_SLICES) -> Trace:
    """The trace of ``result`` (from ``simulate(..., timeline=True)``), times in virtual seconds."""
    ranks = kept_ranks(result, max_ranks, max_slices)
    keep = set(ranks)
    spans: dict[tuple[int, str], list[tuple[str, float, float, dict]]] = {}
    for kind, rank, peer, t0, t1, nbytes in _events(result):
        if kind == "msg":
            if rank in keep:
                spans.setdefault((rank, "send"), []).append((f"send to {peer}", t0, t1, {"bytes": nbytes, "to": peer}))
            if peer in keep:
                spans.setdefault((peer, "recv"), []).append(
                    (f"recv from {rank}", t0, t1, {"bytes": nbytes, "from": rank})
                )
        elif rank in keep:
            spans.setdefault((rank, "compute"), []).append((kind, t0, t1, {"bytes": nbytes}))
    trace = Trace(
        algorithm=result.algorithm,
        ranks=result.p,
        bytes_per_rank=result.nbytes,
        predicted_seconds=result.time,
        model=result.model,
        topology=result.topology,
        ranks_shown=len(ranks),
        note="" if len(ranks) == result.p else f"an even sample of {len(ranks)} of {result.p} ranks",
    )
    for rank in ranks:
        trace.process(rank, f"rank {rank}", order=rank)
    if len(ranks) < result.p:
        _busy_counters(trace, result)
    for (rank, kind), items in sorted(spans.items(), key=lambda kv: (kv[0][0], KINDS.index(kv[0][1]))):
        lane_of = lanes((t0, t1) for _, t0, t1, _ in items)
        base = KINDS.index(kind) * LANES_PER_KIND
        for lane in sorted(set(lane_of)):
            trace.thread(rank, base + lane, kind if lane == 0 else f"{kind} {lane + 1}")
        for (name, t0, t1, args), lane in zip(items, lane_of):
            trace.slice(rank, base + lane, name, t0, t1, cat=kind if kind != "compute" else name, args=args)
    return trace


def write_sim_trace(result: SimResult, path: str | Path, max_ranks: int = MAX_RANKS) -> tuple[Path, str]:
    """Write the trace of ``result`` to ``path``; returns the path and a line saying what it holds."""
    trace = sim_trace(result, max_ranks)
    out = trace.write(path)
    slices = sum(1 for e in trace.events if e["ph"] == "X")
    shown = trace.metadata["ranks_shown"]
    what = f"{slices} slices on {shown} ranks" + ("" if shown == result.p else f" (an even sample of {result.p})")
    return out, what


def _busy_counters(trace: Trace, result: SimResult, points: int = COUNTER_POINTS) -> None:
    """How many of all the ranks send, receive and reduce, at ``points`` even instants (pid ``result.p``)."""
    trace.process(result.p, f"all {result.p} ranks", order=-1)
    at = np.linspace(0.0, result.time, points + 1)
    spans = intervals(result)
    series = {}
    for kind, label in BUSY:
        times, counts = busy_counts(spans[kind])
        series[label] = np.asarray(counts)[np.searchsorted(times, at, side="right") - 1]
    for i, t in enumerate(at):
        trace.counter(result.p, "ranks busy", float(t), {label: int(series[label][i]) for _, label in BUSY})


def _events(result: SimResult) -> list[tuple[str, int, int, float, float, int]]:
    if result.events is None:
        raise ValueError("this result has no timeline: simulate(..., timeline=True)")
    return result.events
