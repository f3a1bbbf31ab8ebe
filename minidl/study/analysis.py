"""From the raw runs to the study's findings: the target, the best rate per batch, the fits.

For each recipe and batch the learning rate with the fewest median steps to the target (over
seeds) is taken, as Shallue et al. do; a batch where no rate reaches the target in most seeds is
kept as "not reached". Final accuracy per batch is reported at the rate that maximises it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minidl.study.regimes import McCandlishFit, Regimes, find_regimes, fit_mccandlish, steps_to_target
from minidl.study.results import noise_at
from minidl.study.training import RunRecord, run_label

TARGET_FRACTION = 0.98  # the automatic target: 98% of the smallest batch's final accuracy, rounded down


def choose_target(records: list[RunRecord], batch: int, recipe: str) -> float:
    """A target the smallest batch reaches comfortably: 98% of its best median final accuracy."""
    finals: dict[float, list[float]] = defaultdict(list)
    for r in records:
        plain = r.spec.get("comm_hook", "none") == "none"
        if r.spec["batch"] == batch and r.spec["recipe"] == recipe and plain and not r.spec.get("sweep"):
            finals[r.spec["lr"]].append(r.final_test_accuracy)
    if not finals:
        raise ValueError(f"no run of {recipe} at batch {batch} to choose a target from")
    best = max(float(np.median(v)) for v in finals.values())
    return math.floor(100 * TARGET_FRACTION * best) / 100


@dataclass
class BatchPoint:
    """One recipe at one batch, at its best learning rate."""

    batch: int
    lr: float | None  # best rate for steps to target (None: no rate reached it)
    steps: float  # median over seeds at that rate (inf: not reached in most seeds)
    steps_min: float
    steps_max: float
    epochs: float
    reached: int  # seeds that reached the target at that rate
    seeds: int
    final_accuracy: float  # median over seeds, at the rate that maximises it
    final_lr: float
    train_accuracy: float
    gap: float
    sharpness: float | None  # median over seeds at the best-steps rate (else the best-accuracy rate)
    b_simple: float | None


@dataclass
class RecipeSummary:
    recipe: str
    points: list[BatchPoint]
    fit: McCandlishFit | None = None
    regimes: Regimes | None = None
    notes: list[str] = field(default_factory=list)

    def point(self, batch: int) -> BatchPoint | None:
        return next((p for p in self.points if p.batch == batch), None)


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else math.nan


def summarize(records: list[RunRecord], target: float, n_train: int) -> list[RecipeSummary]:
    """Per recipe, per batch: the best point, then the McCandlish fit and the regimes of the curve."""
    groups: dict[str, dict[int, dict[float, list[RunRecord]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for r in records:
        if not r.spec.get("sweep"):
            groups[run_label(r.spec)][r.spec["batch"]][r.spec["lr"]].append(r)
    out = []
    for recipe, by_batch in groups.items():
        points = []
        for batch in sorted(by_batch):
            points.append(_best_point(batch, by_batch[batch], target, n_train))
        summary = RecipeSummary(recipe, points)
        reached = [p for p in points if math.isfinite(p.steps)]
        if len(reached) >= 2:
            summary.fit = fit_mccandlish([p.batch for p in reached], [p.steps for p in reached])
            summary.regimes = find_regimes([p.batch for p in reached], [p.steps for p in reached])
        else:
            summary.notes.append(f"only {len(reached)} batch size(s) reached the target: no fit")
        out.append(summary)
    return out


def _best_point(batch: int, by_lr: dict[float, list[RunRecord]], target: float, n: int) -> BatchPoint:
    stats = {}
    for lr, runs in by_lr.items():
        steps = [steps_to_target(r.curve, target) for r in runs]
        finite = [s for s in steps if s is not None]
        med = _median([math.inf if s is None else s for s in steps])
        stats[lr] = (med, finite, runs)
    best_lr = min(stats, key=lambda lr: (stats[lr][0], -_median([r.final_test_accuracy for r in stats[lr][2]])))
    med, finite, runs = stats[best_lr]
    acc_lr = max(by_lr, key=lambda lr: _median([r.final_test_accuracy for r in by_lr[lr]]))
    acc_runs = by_lr[acc_lr]
    sharp_runs = runs if math.isfinite(med) else acc_runs
    sharp = [r.sharpness for r in sharp_runs if r.sharpness is not None]
    noise = [noise_at(r, steps_to_target(r.curve, target)) for r in runs if r.noise]
    train_acc = _median([r.final_train_accuracy for r in acc_runs])
    final = _median([r.final_test_accuracy for r in acc_runs])
    return BatchPoint(
        batch=batch,
        lr=best_lr if math.isfinite(med) else None,
        steps=med,
        steps_min=min(finite) if finite else math.inf,
        steps_max=max(finite) if finite else math.inf,
        epochs=med * batch / n,
        reached=len(finite),
        seeds=len(runs),
        final_accuracy=final,
        final_lr=acc_lr,
        train_accuracy=train_acc,
        gap=train_acc - final,
        sharpness=_median(sharp) if sharp else None,
        b_simple=next((b for b in noise if b is not None), None),
    )


def measured_b_simple(summaries: list[RecipeSummary]) -> tuple[float, int, str] | None:
    """(B_simple, batch it was measured at, recipe) from the first recipe that measured it."""
    for s in summaries:
        for p in s.points:
            if p.b_simple is not None and math.isfinite(p.b_simple):
                return p.b_simple, p.batch, s.recipe
    return None


def sweep_table(records: list[RunRecord]) -> dict[str, list[dict[str, Any]]]:
    """Sweep runs grouped by what was swept, as (value, median test/train accuracy, gap) rows."""
    by: dict[str, dict[Any, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        kind = r.spec.get("sweep")
        if kind:
            value = "x".join(map(str, r.spec["hidden"])) if kind == "width" else r.spec["train_size"]
            by[kind][value].append(r)
    table = {}
    for kind, groups in by.items():
        rows = []
        for value, runs in groups.items():
            test = _median([r.final_test_accuracy for r in runs])
            train = _median([r.final_train_accuracy for r in runs])
            rows.append({"value": value, "test": test, "train": train, "gap": train - test, "runs": len(runs)})
        key = (lambda row: int(str(row["value"]).split("x")[0])) if kind == "width" else (lambda row: row["value"])
        table[kind] = sorted(rows, key=key)
    return table
