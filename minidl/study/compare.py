"""``compare RUN...``: trainer runs side by side from their ``--metrics`` files (JSONL or CSV).

Each file's first record holds its run's configuration (``minidl.metrics``), so runs are labelled
by what differs between them (``lr=0.1, batch_size=64``); files without one are labelled by
name. Loss and test accuracy are drawn against step, epoch and wall time, and a table gives each
run's final accuracy, time to a target and throughput.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from minidl.study.errors import StudyError
from minidl.study.options import HelpFormatter

# Options that say where output goes or how it is shown, not what was trained.
NOT_CONFIG = {"metrics", "profile", "profile_step", "checkpoint_dir", "quiet", "no_progress", "resume", "data_dir"}


@dataclass
class Run:
    """One metrics file: its configuration and its step and epoch rows."""

    path: Path
    config: dict[str, Any] | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    label: str = ""

    def wall(self, rows: list[dict[str, Any]]) -> list[float]:
        """Seconds since the start at each row: the file's ``elapsed``, else the summed step times."""
        if rows and all(r.get("elapsed") is not None for r in rows):
            return [float(r["elapsed"]) for r in rows]
        cumulative, at = 0.0, {}
        for r in self.steps:
            cumulative += float(r.get("total") or 0.0)
            at[r["step"]] = cumulative
        return [at.get(r["step"], math.nan) for r in rows]

    @property
    def steps_per_epoch(self) -> float:
        first = [r for r in self.steps if r.get("epoch") == self.steps[0].get("epoch")] if self.steps else []
        return float(len(first)) or 1.0


def _number(text: str) -> Any:
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def read_metrics(path: str | Path) -> Run:
    """A metrics file as a :class:`Run`; a missing, empty or corrupt file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"metrics file {path} does not exist")
    if path.suffix not in (".jsonl", ".csv"):
        raise StudyError(f"metrics file {path} must end in .jsonl or .csv")
    rows: list[dict[str, Any]] = []
    if path.suffix == ".jsonl":
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise StudyError(f"{path} line {i} is not JSON ({e.msg})") from None
    else:
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                rows.append({k: (v if k == "config" else _number(v or "")) for k, v in row.items() if k is not None})
    config = None
    run = Run(path, None)
    for row in rows:
        kind = row.get("kind")
        if kind == "config":
            raw = row.get("config")
            try:
                config = json.loads(raw) if isinstance(raw, str) else raw
            except json.JSONDecodeError:
                raise StudyError(f"{path}: the configuration record is not valid JSON") from None
        elif kind == "step":
            run.steps.append(row)
        elif kind == "epoch":
            run.epochs.append(row)
    run.config = config if isinstance(config, dict) else None
    if not run.steps and not run.epochs:
        raise StudyError(f"{path} has no step or epoch rows: not a minidl.train --metrics file")
    return run


def label_runs(runs: list[Run]) -> None:
    """Label each run by the configuration values that differ between the runs."""
    configs = [r.config for r in runs]
    keys: list[str] = []
    if all(c is not None for c in configs) and len(runs) > 1:
        every = sorted(set().union(*(c.keys() for c in configs)) - NOT_CONFIG)  # type: ignore[union-attr]
        keys = [k for k in every if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]  # type: ignore[union-attr]
    for run in runs:
        if keys:
            run.label = ", ".join(f"{k}={_short(run.config.get(k))}" for k in keys)  # type: ignore[union-attr]
        else:
            run.label = run.path.stem
    labels = [r.label for r in runs]
    for run in runs:
        if labels.count(run.label) > 1:
            run.label = f"{run.label} ({run.path.stem})"


def _short(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def default_target(runs: list[Run]) -> float:
    """98% of the lowest best accuracy among the runs, rounded down: a target every run can reach."""
    bests = [max((e.get("test_accuracy") or 0.0) for e in r.epochs) for r in runs if r.epochs]
    return math.floor(100 * 0.98 * min(bests)) / 100 if bests else 0.9


def summary(run: Run, target: float) -> dict[str, Any]:
    acc = [(e.get("test_accuracy") or 0.0) for e in run.epochs]
    hit = next((i for i, a in enumerate(acc) if a >= target), None)
    wall = run.wall(run.epochs)
    samples = sum(float(r.get("samples") or 0) for r in run.steps)
    busy = sum(float(r.get("total") or 0) for r in run.steps)
    return {
        "run": run.label,
        "file": str(run.path),
        "final_test_accuracy": acc[-1] if acc else None,
        "best_test_accuracy": max(acc) if acc else None,
        "epochs_to_target": run.epochs[hit]["epoch"] if hit is not None else None,
        "seconds_to_target": wall[hit] if hit is not None else None,
        "samples_per_second": samples / busy if busy > 0 else None,
        "steps": run.steps[-1]["step"] if run.steps else None,
    }


def table(rows: list[dict[str, Any]], target: float) -> str:
    width = max(len("run"), *(len(r["run"]) for r in rows))
    lines = [
        f"{'run':<{width}} {'final acc':>9} {'best acc':>8} {'epochs to ' + format(target, '.2f'):>15} "
        f"{'s to target':>11} {'samples/s':>10}"
    ]
    for r in rows:
        lines.append(
            f"{r['run']:<{width}} {_cell(r, 'final_test_accuracy', '.4f'):>9} "
            f"{_cell(r, 'best_test_accuracy', '.4f'):>8} "
            f"{_cell(r, 'epochs_to_target', 'd'):>15} {_cell(r, 'seconds_to_target', '.3g'):>11} "
            f"{_cell(r, 'samples_per_second', '.0f'):>10}"
        )
    return "\n".join(lines)


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    if row[key] is None:
        return "not reached" if "target" in key else "-"
    return format(row[key], fmt)


def plot(runs: list[Run], path: Path) -> Path:
    from minidl.study.plots import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), squeeze=False)
    for run in runs:
        spe = run.steps_per_epoch
        xs_step = {
            "step": [r["step"] for r in run.steps],
            "epoch": [r["step"] / spe for r in run.steps],
            "wall time (s)": run.wall(run.steps),
        }
        xs_epoch = {
            "step": [r["step"] for r in run.epochs],
            "epoch": [r["epoch"] for r in run.epochs],
            "wall time (s)": run.wall(run.epochs),
        }
        loss = np.array([r.get("loss") if r.get("loss") is not None else np.nan for r in run.steps], dtype=float)
        acc = [r.get("test_accuracy") for r in run.epochs]
        for j, axis in enumerate(xs_step):
            (line,) = axes[0][j].plot(xs_step[axis], loss, lw=0.8, alpha=0.8, label=run.label)
            axes[1][j].plot(xs_epoch[axis], acc, marker="o", ms=3, color=line.get_color(), label=run.label)
    for j, axis in enumerate(("step", "epoch", "wall time (s)")):
        axes[0][j].set(xlabel=axis, ylabel="training loss", yscale="log")
        axes[1][j].set(xlabel=axis, ylabel="test accuracy")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{len(runs)} run(s): loss and accuracy vs step, epoch and wall time")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="trainer runs side by side from their --metrics files",
        description="Plot loss and test accuracy vs step, epoch and wall time for any number of "
        "'python -m minidl.train --metrics' files (JSONL or CSV), labelled by what differs between their "
        "configurations, and print a summary table (final accuracy, time to a target, samples/s).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="metrics files (.jsonl or .csv)")
    p.add_argument("--target", type=float, help="target test accuracy (default: 98%% of the worst run's best)")
    p.add_argument("--out", default="compare", help="directory for compare.png and summary.json")
    p.set_defaults(run=cmd_compare, parser=p)


def cmd_compare(args: argparse.Namespace) -> int:
    runs = [read_metrics(p) for p in args.runs]
    label_runs(runs)
    target = args.target if args.target is not None else default_target(runs)
    if not 0 < target <= 1:
        raise StudyError(f"--target {target} must be an accuracy in (0, 1]")
    rows = [summary(r, target) for r in runs]
    print(table(rows, target))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({"target": target, "runs": rows}, indent=1) + "\n")
    figure = plot(runs, out / "compare.png")
    print(f"wrote {figure} and {out / 'summary.json'}")
    return 0
