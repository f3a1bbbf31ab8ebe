"""A study directory on disk: its configuration, the raw runs (appended one by one) and the tables.

``runs.jsonl`` gets one line per finished run, flushed at once, so Ctrl-C (or a crash) loses at
most the run in progress and ``--resume`` skips every run already there. ``results.csv`` and
``results.json`` are rewritten from it after every run: one row per run, with steps and epochs to
the target (empty / null when the target was not reached, never dropped).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from minidl.study.errors import StudyError
from minidl.study.regimes import steps_to_target
from minidl.study.training import RunRecord

CONFIG = "study.json"
RUNS = "runs.jsonl"
CSV_FIELDS = (
    "sweep",
    "recipe",
    "comm_hook",
    "ranks",
    "batch",
    "lr",
    "seed",
    "width",
    "train_size",
    "steps_run",
    "epochs_run",
    "target",
    "reached",
    "steps_to_target",
    "epochs_to_target",
    "final_test_accuracy",
    "final_train_accuracy",
    "generalization_gap",
    "diverged",
    "sharpness",
    "b_simple",
    "wall_seconds",
)


def write_config(out: Path, config: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def read_config(out: Path) -> dict[str, Any]:
    path = out / CONFIG
    if not path.is_file():
        raise StudyError(
            f"{out} is not a batch-scaling results directory (no {CONFIG}); run 'batch-scaling --out {out}'"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise StudyError(f"{path} is corrupt ({e.msg} at line {e.lineno}); delete the directory and rerun") from None


def append_run(out: Path, record: RunRecord) -> None:
    with (out / RUNS).open("a") as fh:
        fh.write(json.dumps(asdict(record)) + "\n")
        fh.flush()


def read_runs(out: Path) -> list[RunRecord]:
    """The finished runs; a truncated last line (interrupted write) is dropped, other damage is an error."""
    path = out / RUNS
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            records.append(RunRecord(**raw))
        except (json.JSONDecodeError, TypeError) as e:
            if i == len(lines):
                continue  # the run being written when the study was stopped: it will run again
            raise StudyError(f"{path} line {i} is corrupt ({e}); delete that line or the directory and rerun") from None
    return records


def noise_at(record: RunRecord, step: int | None) -> float | None:
    """B_simple measured in ``record`` at the evaluation nearest ``step`` (the last one if None)."""
    if not record.noise:
        return None
    if step is None:
        return record.noise[-1][1]
    return min(record.noise, key=lambda sb: abs(sb[0] - step))[1]


def result_row(record: RunRecord, target: float | None) -> dict[str, Any]:
    """One run as a flat row (what results.csv and results.json hold)."""
    spec = record.spec
    n, batch = spec["train_size"], spec["batch"]
    steps = steps_to_target(record.curve, target) if target is not None else None
    last_step = record.curve[-1][0] if record.curve else 0
    return {
        "sweep": spec.get("sweep") or "grid",
        "recipe": spec["recipe"],
        "comm_hook": spec.get("comm_hook", "none"),  # not "none": on ``ranks`` virtual ranks
        "ranks": spec.get("ranks", 1),
        "batch": batch,
        "lr": spec["lr"],
        "seed": spec["seed"],
        "width": "x".join(map(str, spec["hidden"])),
        "train_size": n,
        "steps_run": last_step,
        "epochs_run": last_step * batch / n,
        "target": target,
        "reached": steps is not None,
        "steps_to_target": steps,
        "epochs_to_target": None if steps is None else steps * batch / n,
        "final_test_accuracy": record.final_test_accuracy,
        "final_train_accuracy": record.final_train_accuracy,
        "generalization_gap": record.final_train_accuracy - record.final_test_accuracy,
        "diverged": record.diverged,
        "sharpness": record.sharpness,
        "b_simple": noise_at(record, steps),
        "wall_seconds": record.wall_seconds,
    }


def write_tables(out: Path, records: list[RunRecord], target: float | None) -> list[dict[str, Any]]:
    rows = [result_row(r, target) for r in records]
    with (out / "results.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for row in rows:
            w.writerow(
                {k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in row.items()}
            )
    clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in rows]
    (out / "results.json").write_text(json.dumps({"target": target, "runs": clean}, indent=1) + "\n")
    return rows
