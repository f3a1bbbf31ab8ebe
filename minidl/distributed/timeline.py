"""Draw one training step as a per-rank timeline (a Gantt chart), to *see* overlap.

Each rank has two lanes: computation (forward, backward, optimizer) and communication (one bar
per bucket allreduce, on the comm thread). Bars of the comm lane that sit under backward bars
are hidden communication; the red "exposed" bar is the time backward had to wait.
"""

from __future__ import annotations

from pathlib import Path

COLORS = {
    "forward": "#4C72B0",
    "backward": "#55A868",
    "optimizer": "#8172B2",
    "exposed_comm": "#C44E52",
    "allreduce": "#DD8452",
}


def plot_step_timeline(
    ranks: list[list[tuple[str, float, float]]],
    path: str | Path,
    title: str = "one training step",
) -> Path:
    """Save a timeline of ``ranks[r]`` = [(label, start_s, end_s), ...] to ``path`` (PNG or SVG).

    Labels ``forward``, ``backward``, ``optimizer`` and ``exposed_comm`` go on the compute lane;
    labels starting with ``bucket`` go on the communication lane.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    path = Path(path)
    t0 = min((s for lane in ranks for _, s, _ in lane), default=0.0)
    fig, ax = plt.subplots(figsize=(10, 1.4 + 0.8 * len(ranks)))
    ticks, labels = [], []
    for r, intervals in enumerate(ranks):
        base = (len(ranks) - 1 - r) * 2.2
        for label, start, end in intervals:
            comm = label.startswith("bucket")
            y = base if comm else base + 1.0
            color = COLORS["allreduce"] if comm else COLORS.get(label, "#999999")
            ax.barh(y, (end - start) * 1e3, left=(start - t0) * 1e3, height=0.8, color=color, edgecolor="black", lw=0.3)
            if comm and (end - start) * 1e3 > 0:
                mid = (start + end - 2 * t0) / 2 * 1e3
                ax.text(mid, y, label.removeprefix("bucket "), ha="center", va="center", fontsize=7)
        ticks += [base + 1.0, base]
        labels += [f"rank {r} compute", f"rank {r} comm"]
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels)
    ax.set_xlabel("time (ms)")
    ax.set_title(title)
    handles = [Patch(color=c, label=k.replace("_", " ")) for k, c in COLORS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
