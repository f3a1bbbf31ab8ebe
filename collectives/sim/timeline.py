"""A per-rank Gantt chart of a simulated collective: sends, receives and reductions over time.

Up to ``max_rows`` ranks (16) get one row each. Beyond that the chart shows an even sample of
ranks, always including the first and the last, above a summary panel that counts how many
ranks are sending, receiving and reducing at each moment, so the shape of the whole run stays
visible at any scale. matplotlib is imported only when a chart is drawn.
"""

from __future__ import annotations

from pathlib import Path

from collectives.sim.result import SimResult
from collectives.sim.units import format_size

COLORS = {"send": "#4C72B0", "recv": "#55A868", "reduce": "#C44E52", "copy": "#8172B2"}


def sample_ranks(p: int, max_rows: int = 16) -> list[int]:
    """All ranks if they fit, else an even sample with rank 0 and rank p-1."""
    if p <= max_rows:
        return list(range(p))
    step = (p - 1) / (max_rows - 1)
    return sorted({round(i * step) for i in range(max_rows)})


def intervals(result: SimResult) -> dict[str, list[tuple[int, float, float]]]:
    """(rank, start, end) per activity: a message is a send on its source and a receive on its destination."""
    if result.events is None:
        raise ValueError("this result has no timeline: simulate(..., timeline=True)")
    out: dict[str, list[tuple[int, float, float]]] = {k: [] for k in COLORS}
    for kind, rank, peer, t0, t1, _ in result.events:
        if kind == "msg":
            out["send"].append((rank, t0, t1))
            out["recv"].append((peer, t0, t1))
        else:
            out[kind].append((rank, t0, t1))
    return out


def busy_counts(spans: list[tuple[int, float, float]]) -> tuple[list[float], list[int]]:
    """Step function: how many distinct ranks have an interval open at each time."""
    edges = []
    for rank, t0, t1 in spans:
        if t1 > t0:
            edges.append((t0, 1, rank))
            edges.append((t1, -1, rank))
    edges.sort(key=lambda e: (e[0], e[1]))
    open_per_rank: dict[int, int] = {}
    times, counts = [0.0], [0]
    busy = 0
    for t, delta, rank in edges:
        before = open_per_rank.get(rank, 0)
        after = before + delta
        open_per_rank[rank] = after
        if before == 0 and after > 0:
            busy += 1
        elif before > 0 and after == 0:
            busy -= 1
        times.append(t)
        counts.append(busy)
    return times, counts


def plot(result: SimResult, path: str | Path, max_rows: int = 16, title: str | None = None) -> Path:
    """Draw the timeline of ``result`` (from ``simulate(..., timeline=True)``) to a PNG or SVG file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ValueError(f"timeline file must end in .png, .svg or .pdf, got {path.name!r}")
    spans = intervals(result)
    ranks = sample_ranks(result.p, max_rows)
    row = {r: i for i, r in enumerate(ranks)}
    summarised = result.p > max_rows
    scale, unit = _time_unit(result.time)
    fig_h = 1.2 + 0.32 * len(ranks) + (1.8 if summarised else 0)
    fig = plt.figure(figsize=(11, fig_h))
    grid = fig.add_gridspec(2 if summarised else 1, 1, height_ratios=[3, 1] if summarised else [1])
    ax = fig.add_subplot(grid[0])
    lanes = {"recv": (0.08, 0.28), "reduce": (0.36, 0.28), "copy": (0.36, 0.28), "send": (0.64, 0.28)}
    for kind, items in spans.items():
        bars: dict[int, list[tuple[float, float]]] = {}
        for rank, t0, t1 in items:
            if rank in row and t1 > t0:
                bars.setdefault(rank, []).append((t0 * scale, (t1 - t0) * scale))
        off, height = lanes[kind]
        for rank, segs in bars.items():
            ax.broken_barh(segs, (row[rank] + off - 0.5, height), facecolors=COLORS[kind], alpha=0.85, linewidth=0)
    ax.set_yticks(range(len(ranks)))
    ax.set_yticklabels([f"rank {r}" for r in ranks])
    ax.set_ylim(len(ranks) - 0.5, -0.5)
    ax.set_xlim(0, max(result.time * scale, 1e-12))
    ax.set_xlabel(f"virtual time ({unit})")
    handles = [Patch(color=c, label=k) for k, c in COLORS.items()]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    head = title or (
        f"{result.algorithm or 'algorithm'}: {result.p} ranks, {format_size(result.nbytes)}B, "
        f"predicted {result.time * scale:.4g} {unit}"
    )
    ax.set_title(head + (f" (showing {len(ranks)} of {result.p} ranks)" if summarised else ""))
    if summarised:
        ax2 = fig.add_subplot(grid[1], sharex=ax)
        for kind, label in (("send", "sending"), ("recv", "receiving"), ("reduce", "reducing")):
            times, counts = busy_counts(spans[kind])
            ax2.step([t * scale for t in times], counts, where="post", color=COLORS[kind], label=f"ranks {label}")
        ax2.set_ylabel("busy ranks")
        ax2.set_ylim(0, result.p * 1.05)
        ax2.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
        ax2.set_xlabel(f"virtual time ({unit})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _time_unit(seconds: float) -> tuple[float, str]:
    for scale, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "us")):
        if seconds * scale >= 1:
            return scale, unit
    return 1e9, "ns"


def text_summary(result: SimResult) -> str:
    """How busy each kind of activity kept the ranks: a one-paragraph summary for large runs."""
    spans = intervals(result)
    total = result.time * result.p or 1.0
    parts = []
    for kind in ("send", "recv", "reduce"):
        busy = sum(t1 - t0 for _, t0, t1 in spans[kind])
        parts.append(f"{kind} {busy / total:.0%}")
    return "rank-time spent: " + ", ".join(parts) + " (activities overlap, so these need not add to 100%)"
