"""busbw against message size, one line per contender (MPI in black), for ``collectives.bench --plot``."""

from __future__ import annotations


def plot(records: list[dict], p: int, memcpy: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["collective"], r["type"], r["redop"]) for r in records})
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 4.5 * len(groups)), squeeze=False)
    for ax, (coll, dtype, op) in zip(axes[:, 0], groups):
        rows = [r for r in records if (r["collective"], r["type"], r["redop"]) == (coll, dtype, op)]
        for c in dict.fromkeys(r["algorithm"] for r in rows):
            pts = [(r["bytes"], r["busbw"]) for r in rows if r["algorithm"] == c]
            ax.plot(*zip(*pts), marker="o", ms=3, lw=2.5 if c == "MPI" else 1.2, label=c,
                    color="black" if c == "MPI" else None)  # fmt: skip
        ax.axhline(memcpy / 1e9, ls="--", color="grey", label="memcpy (1 rank)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel("busbw (GB/s)")
        ax.set_title(f"{coll} ({dtype}, {op}) busbw on {p} ranks: hand-written vs MPI")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
