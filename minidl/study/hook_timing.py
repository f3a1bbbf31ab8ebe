"""What a communication hook buys: bytes per step, steps to the target and, on an emulated link, time per step.

Steps to the target come from the batch-scaling runs (in-process virtual ranks, see
:class:`minidl.study.training.HookedGradient`). Time per step cannot: it needs real ranks and a
real wire. With a link, each hook (and the plain allreduce) is timed by the trainer under
``mpiexec`` on ``hook_ranks`` ranks over ``DistributedDataParallel(link=...)``'s emulated link,
one epoch at the study's smallest batch; time to target is then steps x time per step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from minidl.experiments import build_model
from minidl.study.errors import StudyError
from minidl.study.training import run_label

TRAINER_TIMEOUT = 300.0  # seconds per timed trainer launch


def plain_bytes(outcome: Any) -> int:
    """Bytes of one rank's gradient: what the plain allreduce puts on the wire per step."""
    data = outcome.data
    model = build_model(data.model, data.info, tuple(outcome.config.hidden))
    return sum(p.data.nbytes for p in model.parameters())


def time_per_step(hook: str, ranks: int, batch: int, link: str, outcome: Any) -> float:
    """Mean seconds per step (after the first) of the trainer with ``hook`` on ``ranks`` ranks over ``link``."""
    from minidl.study.validate import mpiexec

    data = outcome.data
    with tempfile.TemporaryDirectory() as tmp:
        metrics = Path(tmp) / "m.jsonl"
        cmd = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "minidl.train", "--dataset", data.dataset]
        cmd += ["--model", data.model, "--hidden", ",".join(map(str, outcome.config.hidden))]
        cmd += ["--batch-size", str(batch // ranks), "--epochs", "1", "--comm-hook", hook, "--link", link]
        cmd += ["--metrics", str(metrics), "--threads", "1", "--quiet", "--no-progress"]
        if outcome.config.train_size:
            cmd += ["--train-size", str(outcome.config.train_size)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TRAINER_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise StudyError(f"timing {hook}: the trainer took over {TRAINER_TIMEOUT:.0f} s: {' '.join(cmd)}") from None
        if proc.returncode != 0:
            raise StudyError(f"timing {hook}: the trainer failed ({' '.join(cmd)}):\n{proc.stderr.strip()}")
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    steps = [r["total"] for r in rows if r.get("kind") == "step"][1:]  # the first step pays for warm-up
    if not steps:
        raise StudyError(f"timing {hook}: one epoch gave fewer than two steps; use a smaller batch")
    return float(np.mean(steps))


def hook_table(outcome: Any, link: str | None) -> list[str]:
    """One line per hook at the smallest batch (also written to report.md and hooks.json in the study)."""
    config = outcome.config
    batch = min(config.batches)
    plain = plain_bytes(outcome)
    hook_of = {run_label(r.spec): r.spec.get("comm_hook", "none") for r in outcome.records}
    rows = []
    for summary in outcome.summaries:
        hook = hook_of[summary.recipe]
        point = summary.point(batch)
        wires = [
            r.wire_bytes_per_step
            for r in outcome.records
            if r.wire_bytes_per_step is not None and r.spec.get("comm_hook") == hook and r.spec["batch"] == batch
        ]
        row = {
            "run": summary.recipe,
            "comm_hook": hook,
            "batch": batch,
            "wire_bytes_per_step": float(np.mean(wires)) if wires else float(plain),
            "steps_to_target": point.steps if point else float("nan"),
            "final_accuracy": point.final_accuracy if point else float("nan"),
        }
        if link:
            row["link"] = link
            row["seconds_per_step"] = time_per_step(hook, config.hook_ranks, batch, link, outcome)
            row["seconds_to_target"] = row["seconds_per_step"] * row["steps_to_target"]
        rows.append(row)
    raw = {"target": outcome.target, "ranks": config.hook_ranks, "load_average": os.getloadavg(), "rows": rows}
    (outcome.out / "hooks.json").write_text(json.dumps(raw, indent=1) + "\n")
    lines = [f"communication hooks at B={batch} ({config.hook_ranks} ranks), target {outcome.target:.2f}:"]
    for row in rows:
        line = (
            f"{row['run']}: {row['wire_bytes_per_step'] / 2**10:.1f} KiB/step on the wire "
            f"({plain / row['wire_bytes_per_step']:.1f}x less than plain), "
            f"steps to target {_steps(row['steps_to_target'])}, final accuracy {row['final_accuracy']:.3f}"
        )
        if link:
            line += (
                f"; on {link}: {1e3 * row['seconds_per_step']:.1f} ms/step, "
                f"{_steps(row['seconds_to_target'], '.2f')} s to target"
            )
        lines.append(line)
    with open(outcome.out / "report.md", "a") as report:
        report.write("\n## Communication hooks\n\n" + "\n".join(f"- {line}" for line in lines[1:]) + "\n")
    return lines


def _steps(x: float, fmt: str = ".0f") -> str:
    return format(x, fmt) if np.isfinite(x) else "not reached"
