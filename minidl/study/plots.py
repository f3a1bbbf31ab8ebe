"""The batch-scaling study's figures (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

from minidl.study.analysis import measured_b_simple, sweep_table

REGIME_COLOURS = {"perfect scaling": "#d8f0d8", "diminishing returns": "#fff2cc", "maximal data parallelism": "#f8d7d7"}


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _batch_ticks(ax: Any, batches: Any) -> None:
    """Label a log batch axis at the batches run, as plain integers (matplotlib's minor labels
    such as "3x10^1 4x10^1" collide on short ranges)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ticks = sorted({int(b) for b in batches})
    if not ticks:
        return
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.set_xticklabels([str(b) for b in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def study_plots(outcome: Any) -> list[Path]:
    """All figures of a study into its directory; returns their paths."""
    plt = pyplot()
    out = outcome.out
    files = [
        _steps_figure(plt, outcome, out / "steps_vs_batch.png"),
        _per_batch(plt, outcome, out / "accuracy_vs_batch.png", "final test accuracy", lambda p: p.final_accuracy),
        _per_batch(
            plt, outcome, out / "sharpness_vs_batch.png", "top Hessian eigenvalue", lambda p: p.sharpness, log=True
        ),
        _gap_figure(plt, outcome, out / "generalization_gap.png"),
    ]
    return [f for f in files if f is not None]


def _steps_figure(plt: Any, outcome: Any, path: Path) -> Path:
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    batches = sorted(outcome.config.batches)
    lo, hi = batches[0] / 1.5, batches[-1] * 1.5
    primary = outcome.summaries[0] if outcome.summaries else None
    if primary is not None and primary.regimes is not None:
        r = primary.regimes
        edges = [lo, r.perfect_until or lo, r.maximal_from or hi, hi]
        names = list(REGIME_COLOURS)
        for (a, b), name in zip(itertools.pairwise(edges), names):
            if b > a:
                ax.axvspan(a, b, color=REGIME_COLOURS[name], label=f"{name} ({primary.recipe})", zorder=0)
    finite_steps = [p.steps for s in outcome.summaries for p in s.points if math.isfinite(p.steps)]
    ceiling = max(finite_steps) * 2 if finite_steps else 1.0
    for s in outcome.summaries:
        xs = [p.batch for p in s.points if math.isfinite(p.steps)]
        ys = [p.steps for p in s.points if math.isfinite(p.steps)]
        err = [
            [p.steps - p.steps_min for p in s.points if math.isfinite(p.steps)],
            [p.steps_max - p.steps for p in s.points if math.isfinite(p.steps)],
        ]
        line = ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=f"{s.recipe} (best lr per batch)")
        colour = line[0].get_color()
        missed = [p.batch for p in s.points if not math.isfinite(p.steps)]
        if missed:
            ax.scatter(
                missed, [ceiling] * len(missed), marker="x", color=colour, s=60, label=f"{s.recipe}: not reached"
            )
        if s.fit is not None:
            grid = np.geomspace(lo, hi, 200)
            ax.plot(
                grid,
                s.fit.steps(grid),
                "--",
                color=colour,
                lw=1,
                label=f"fit S_min(1+B_crit/B): B_crit={s.fit.b_crit:.0f}",
            )
            e = s.fit.e_min * (1 + np.geomspace(1e-2, 1e2, 200))
            sfit = s.fit.s_min * (1 + 1 / (e / s.fit.e_min - 1))
            ax2.plot(e, sfit, "--", color=colour, lw=1, label=f"(S/S_min-1)(E/E_min-1)=1, {s.recipe}")
        ax2.scatter([x * y for x, y in zip(xs, ys)], ys, color=colour, label=f"{s.recipe} measured")
    noise = measured_b_simple(outcome.summaries)
    if noise is not None:
        ax.axvline(noise[0], color="k", ls=":", label=f"B_simple measured at B={noise[1]}: {noise[0]:.0f}")
    if not finite_steps:  # nothing reached the target: say so instead of an empty log-log plot
        for a in (ax, ax2):
            a.text(0.5, 0.5, f"no run reached {outcome.target:.2f}", ha="center", transform=a.transAxes)
        ax.set_yscale("linear")
    ax.set(
        xscale="log",
        yscale="log" if finite_steps else "linear",
        xlim=(lo, hi),
        xlabel="global batch size B",
        ylabel=f"steps to {outcome.target:.2f} test accuracy",
        title=f"{outcome.data.model} on {outcome.data.dataset}: steps to target vs batch",
    )
    _batch_ticks(ax, [p.batch for s in outcome.summaries for p in s.points])
    ax.legend(fontsize=7, loc="lower left")
    ax2.set(
        xscale="log" if finite_steps else "linear",
        yscale="log" if finite_steps else "linear",
        xlabel="samples processed E = S x B",
        ylabel="steps S",
        title="steps vs samples: the McCandlish trade-off",
    )
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _per_batch(plt: Any, outcome: Any, path: Path, label: str, value: Any, log: bool = False) -> Path | None:
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    drawn = False
    for s in outcome.summaries:
        pts = [(p.batch, value(p)) for p in s.points if value(p) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=s.recipe)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xscale="log", xlabel="global batch size B", ylabel=label, title=f"{label} vs batch")
    _batch_ticks(ax, [p.batch for s in outcome.summaries for p in s.points])
    if log:
        ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _gap_figure(plt: Any, outcome: Any, path: Path) -> Path:
    sweeps = sweep_table(outcome.records)
    fig, axes = plt.subplots(1, 1 + len(sweeps), figsize=(6.4 * (1 + len(sweeps)), 4.4), squeeze=False)
    ax = axes[0][0]
    for s in outcome.summaries:
        ax.plot([p.batch for p in s.points], [p.gap for p in s.points], marker="o", label=s.recipe)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(
        xscale="log", xlabel="global batch size B", ylabel="train - test accuracy", title="generalization gap vs batch"
    )
    _batch_ticks(ax, [p.batch for s in outcome.summaries for p in s.points])
    ax.legend()
    for ax, (kind, rows) in zip(axes[0][1:], sweeps.items()):
        xs = [str(r["value"]) for r in rows]
        ax.plot(xs, [r["train"] for r in rows], marker="o", label="train accuracy")
        ax.plot(xs, [r["test"] for r in rows], marker="s", label="test accuracy")
        ax.set(xlabel=kind, ylabel="accuracy", title=f"overfitting as {kind} varies (fixed batch)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
