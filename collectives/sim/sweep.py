"""Which algorithm wins where: predicted times over rank counts and message sizes, and why.

This is the tuning decision MPICH makes with its selection table and NCCL with its cost model,
made visible: every cell of the (ranks x size) grid gets every algorithm's predicted time, the
winner, and a reason drawn from the closed forms (which of latency, transfer or reduction
dominates it, and what the runner-up loses on).

A cell is simulated message by message when every algorithm in it fits the ``budget`` (messages
per simulation), and compared by closed forms otherwise, so algorithms are always compared like
with like; closed-form cells are marked, so the table never hides which numbers saw the topology.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from collectives.algorithms import ALGORITHMS, AlgorithmSpec
from collectives.sim.errors import SimulationError
from collectives.sim.machine import Machine
from collectives.sim.simulate import simulate
from collectives.sim.units import format_size, format_time

DEFAULT_BUDGET = 100_000  # messages per simulation before a cell falls back to the closed forms


@dataclass
class Cell:
    p: int
    nbytes: int
    times: dict[str, float] = field(default_factory=dict)  # seconds
    simulated: dict[str, bool] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it cannot run

    @property
    def ranking(self) -> list[tuple[float, str]]:
        return sorted((t, name) for name, t in self.times.items())

    @property
    def winner(self) -> str | None:
        ranking = self.ranking
        return ranking[0][1] if ranking else None


@dataclass
class SweepResult:
    ranks: list[int]
    sizes: list[int]
    algorithms: list[str]
    cells: dict[tuple[int, int], Cell]
    machine: str
    wall: float

    def cell(self, p: int, nbytes: int) -> Cell:
        return self.cells[(p, nbytes)]


def formula_time(spec: AlgorithmSpec, p: int, nbytes: int, itemsize: int, machine: Machine) -> float:
    """The closed form with the machine's alpha (plus one hop), slowest-link beta and gamma."""
    model = machine.model_for(p)
    alpha = model.message_latency + (machine.link.latency if machine.link else 0.0)
    return spec.cost(p, nbytes, itemsize).time(alpha, machine.bottleneck_beta(), model.gamma)


def run_sweep(
    algorithms: Iterable[str],
    ranks: Iterable[int],
    sizes: Iterable[int],
    machine: Machine,
    *,
    method: str = "auto",
    budget: int = DEFAULT_BUDGET,
    dtype: str = "float32",
    progress: Callable[[str], None] | None = None,
) -> SweepResult:
    """Predict every algorithm at every (p, size); ``method`` is "auto", "simulate" or "formula"."""
    if method not in ("auto", "simulate", "formula"):
        raise ValueError(f"method must be 'auto', 'simulate' or 'formula', got {method!r}")
    algorithms, ranks, sizes = list(algorithms), sorted(set(ranks)), sorted(set(sizes))
    itemsize = np.dtype(dtype).itemsize
    start = time.perf_counter()
    cells: dict[tuple[int, int], Cell] = {}
    for p in ranks:
        model, topology = machine.build(p) if method != "formula" else (None, None)
        for nbytes in sizes:
            nbytes -= nbytes % itemsize
            cell = cells[(p, nbytes)] = Cell(p, nbytes)
            runnable = []
            for name in algorithms:
                spec = ALGORITHMS[name]
                why = spec.constraints.violation(p, nbytes // itemsize)
                if why:
                    cell.skipped[name] = why
                else:
                    runnable.append(spec)
            # A cell is compared like with like: all simulated, or (if any algorithm is beyond the
            # budget) all by closed form.
            too_big = any(spec.cost(p, nbytes, itemsize).messages_per_rank * p > budget for spec in runnable)
            by_formula = method == "formula" or (method == "auto" and too_big)
            for spec in runnable:
                if by_formula:
                    cell.times[spec.name] = formula_time(spec, p, nbytes, itemsize, machine)
                    cell.simulated[spec.name] = False
                    continue
                try:
                    res = simulate(spec, p, nbytes, model=model, topology=topology, dtype=dtype)
                except SimulationError as e:
                    cell.skipped[spec.name] = f"simulation failed: {e}"
                    continue
                cell.times[spec.name], cell.simulated[spec.name] = res.time, True
            if progress:
                progress(f"p={p} {format_size(nbytes)}B: {cell.winner}")
    sizes = sorted({n - n % itemsize for n in sizes})
    return SweepResult(ranks, sizes, algorithms, cells, machine.describe(), time.perf_counter() - start)


def short_names(names: Iterable[str]) -> dict[str, str]:
    """Two-to-four letter labels for table cells: ring -> R, recursive_doubling -> RD."""
    known = {"rabenseifner": "RB", "tree_pipelined": "TP", "naive": "N"}
    out: dict[str, str] = {}
    for name in names:
        label = known.get(name) or "".join(w[0] for w in name.split("_")).upper()
        while label in out.values():
            label += name[-1].upper()
        out[name] = label
    return out


def table(result: SweepResult) -> str:
    """The winner grid: one row per size, one column per rank count (* = closed form, not simulated)."""
    labels = short_names(result.algorithms)
    width = max(5, *(len(label) + 1 for label in labels.values()))
    lines = ["winner per (size, ranks); * = cell compared by closed forms (beyond the simulation budget)"]
    lines.append(f"{'size':>8} " + "".join(f"{p:>{width}}" for p in result.ranks))
    for nbytes in result.sizes:
        row = []
        for p in result.ranks:
            cell = result.cell(p, nbytes)
            w = cell.winner
            mark = "" if w is None or cell.simulated.get(w) else "*"
            row.append(f"{(labels[w] if w else '-') + mark:>{width}}")
        lines.append(f"{format_size(nbytes):>8} " + "".join(row))
    lines.append("legend: " + ", ".join(f"{v} = {k}" for k, v in labels.items()))
    return "\n".join(lines)


def crossovers(result: SweepResult) -> str:
    """Per rank count, the size ranges each algorithm wins, with the reason from its closed form."""
    lines = []
    for p in result.ranks:
        runs: list[tuple[str, int, int]] = []
        for nbytes in result.sizes:
            w = result.cell(p, nbytes).winner
            if w is None:
                continue
            if runs and runs[-1][0] == w:
                runs[-1] = (w, runs[-1][1], nbytes)
            else:
                runs.append((w, nbytes, nbytes))
        parts = [f"{w} {format_size(a)}..{format_size(b)}" if a != b else f"{w} {format_size(a)}" for w, a, b in runs]
        lines.append(f"p={p:<6} " + ", then ".join(parts))
    return "\n".join(lines)


def explain(result: SweepResult, p: int, nbytes: int, machine: Machine, itemsize: int = 4) -> str:
    """Why the winner wins at (p, nbytes): its dominant term and the runner-up's, from the closed forms."""
    cell = result.cell(p, nbytes)
    ranking = cell.ranking
    if not ranking:
        return f"p={p}, {format_size(nbytes)}B: nothing could run"
    model = machine.model_for(p)
    alpha = model.message_latency + (machine.link.latency if machine.link else 0.0)
    beta, gamma = machine.bottleneck_beta(), model.gamma

    def terms(name: str) -> str:
        c = ALGORITHMS[name].cost(p, nbytes, itemsize)
        parts = {
            "latency": c.latency_terms * alpha,
            "transfer": c.transfer_bytes * beta,
            "reduce": c.reduce_bytes * gamma,
        }
        top = max(parts, key=parts.get)
        return f"{c.latency_terms:g} alpha + {c.transfer_bytes / max(nbytes, 1):.2f} n beta (mostly {top})"

    best_t, best = ranking[0]
    text = f"p={p}, {format_size(nbytes)}B: {best} wins in {format_time(best_t)}: {terms(best)}"
    if len(ranking) > 1:
        t2, second = ranking[1]
        text += f"; runner-up {second} {t2 / best_t:.2f}x slower: {terms(second)}"
    return text


def plot(result: SweepResult, path: str | Path) -> Path:
    """The crossover map: winner per (size, ranks) as colours, with the winner's busbw in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    path = Path(path)
    names = result.algorithms
    index = {n: i for i, n in enumerate(names)}
    grid = np.full((len(result.ranks), len(result.sizes)), np.nan)
    for i, p in enumerate(result.ranks):
        for j, nbytes in enumerate(result.sizes):
            w = result.cell(p, nbytes).winner
            if w is not None:
                grid[i, j] = index[w]
    cmap = ListedColormap(plt.get_cmap("tab10").colors[: max(len(names), 1)])
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * len(result.sizes), 1.4 + 0.42 * len(result.ranks)))
    ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, aspect="auto", origin="lower")
    labels = short_names(names)
    for i, p in enumerate(result.ranks):
        for j, nbytes in enumerate(result.sizes):
            cell = result.cell(p, nbytes)
            w = cell.winner
            if w is not None:
                mark = "" if cell.simulated.get(w) else "*"
                ax.text(j, i, labels[w] + mark, ha="center", va="center", fontsize=7, color="white")
    ax.set_xticks(range(len(result.sizes)))
    ax.set_xticklabels([format_size(s) for s in result.sizes], rotation=60, fontsize=8)
    ax.set_yticks(range(len(result.ranks)))
    ax.set_yticklabels([str(p) for p in result.ranks], fontsize=8)
    ax.set_xlabel("message size per rank (bytes)")
    ax.set_ylabel("ranks")
    ax.set_title(f"fastest allreduce (* = closed form)\n{result.machine}", fontsize=9)
    handles = [Patch(color=cmap(index[n]), label=f"{labels[n]} {n}") for n in names]
    ax.legend(handles=handles, bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
