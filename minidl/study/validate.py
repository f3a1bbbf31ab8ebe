"""``validate``: the planner's predictions against real ``mpiexec`` runs of the trainer.

At p = 1, 2 and 4 ranks on this machine, with an emulated link, the planner predicts the step
time and the time to the target accuracy; the trainer is then run for real under ``mpiexec``
with ``--metrics`` and the measured figures are read back. The machine's cores are shared by the
ranks, which the prediction models (compute stretches by p / cores), not ignores.

The trainer measures test accuracy once per epoch, so both the measured and the predicted time
to target count whole epochs; the first step (kernel loading, first-touch of buffers) is left
out of the measured times.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from minidl.study.errors import StudyError
from minidl.study.options import HelpFormatter

TOLERANCE = 0.25
OPTIMIZER = {"sgd": ("sgd", 0.0), "momentum": ("sgd", 0.9), "lars": ("lars", 0.9), "lamb": ("lamb", 0.9)}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="the planner vs real mpiexec runs of the trainer at p = 1, 2, 4",
        description="Predict step time and time to target with the planner, run 'mpiexec -n p python -m "
        "minidl.train' with an emulated link for each p, and print predicted vs measured with errors "
        f"(the goal: within {int(TOLERANCE * 100)}%%).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--study", help="a batch-scaling results directory (else the noise-scale model)")
    p.add_argument("--recipe", help="the study's recipe to run (default: the one with fewest steps)")
    p.add_argument("--target", type=float, help="target accuracy (default: the study's, or 0.9)")
    p.add_argument("--ranks", default="1,2,4", help="rank counts to run")
    p.add_argument("--link", default="1Gbps,50us", help="emulated link BW,LATENCY (the trainer's --link)")
    p.add_argument("--per-worker-batch", type=int, default=32, help="the trainer's --batch-size")
    p.add_argument("--algorithm", default="ring", help="allreduce algorithm of the trainer")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores the ranks share")
    p.add_argument("--epochs", type=int, help="epochs per run (default: twice the predicted epochs to target + 2)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before a run is abandoned")
    p.add_argument("--profile", help="a collectives.sim calibrate profile to use instead of calibrating now")
    p.add_argument("--no-calibrate", action="store_true", help="predict from the link alone (no calibration)")
    p.add_argument("--out", default="validation", help="directory for the metrics files and validation.json")
    p.set_defaults(
        run=cmd_validate,
        parser=p,
        dataset=None,
        model=None,
        hidden=None,
        preset="ib-edr",
        topology="full",
        device="cpu",
        device_speed=1.0,
        bucket_mb=25.0,
        no_overlap=False,
        threads=1,
        algorithms=None,
    )


def mpiexec() -> str:
    local = Path(sys.executable).parent / "mpiexec"
    if local.exists():
        return str(local)
    import shutil

    found = shutil.which("mpiexec")
    if found is None:
        raise StudyError("mpiexec not found; install the mpich extra (pip install -e '.[mpich]')")
    return found


def trainer_command(
    p: int, args: Any, data: Any, lr: float, warmup_epochs: float, epochs: int, metrics: Path
) -> list[str]:
    optimizer, momentum = OPTIMIZER[args.recipe_used]
    cmd = [mpiexec(), "-n", str(p), sys.executable, "-m", "minidl.train", "--dataset", data.dataset]
    cmd += [
        "--model",
        data.model,
        "--hidden",
        ",".join(map(str, data.hidden)),
        "--batch-size",
        str(args.per_worker_batch),
    ]
    cmd += ["--optimizer", optimizer, "--momentum", str(momentum), "--lr", f"{lr:.6g}", "--epochs", str(epochs)]
    cmd += ["--warmup-epochs", f"{warmup_epochs:.6g}", "--algorithm", args.algorithm, "--link", args.link]
    cmd += ["--metrics", str(metrics), "--threads", "1", "--quiet", "--no-progress", "--seed", "0"]
    return cmd


def measured(metrics: Path, target: float) -> dict[str, Any]:
    """Mean step time (after epoch 1), and the time and epochs to ``target`` from a metrics file."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    steps = [r for r in rows if r.get("kind") == "step"]
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    if not steps or not epochs:
        raise StudyError(f"{metrics} has no step or epoch rows: the trainer wrote no metrics")
    later = [r["total"] for r in steps if r["epoch"] > 1] or [r["total"] for r in steps[1:]]  # mean: see planner
    hit = next((e for e in epochs if (e.get("test_accuracy") or 0) >= target), None)
    tta = None
    if hit is not None:
        tta = sum(r["total"] for r in steps[1:] if r["step"] <= hit["step"])
    return {
        "step_time": float(np.mean(later)),
        "epochs_to_target": hit["epoch"] if hit else None,
        "time_to_target": tta,
        "final_accuracy": epochs[-1].get("test_accuracy"),
    }


def cmd_validate(args: argparse.Namespace) -> int:
    from minidl.distributed import predict
    from minidl.study.plan import parse_workers, setup
    from minidl.study.planner import predict_one

    ranks = parse_workers(args.ranks)
    if args.algorithm not in predict.algorithms():
        raise StudyError(
            f"unknown allreduce algorithm {args.algorithm!r}; expected one of {', '.join(predict.algorithms())}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.profile and not args.no_calibrate and max(ranks) > 1:
        args.profile = calibrate([p for p in ranks if p > 1], out / "profile.json", args.timeout)
    data, steps, compute, machine, _ = setup(args)
    args.recipe_used = steps.recipe
    recipe_warm = _recipe_warmup(steps.recipe)
    rows = []
    for p in ranks:
        pred = predict_one(compute, steps, p, args.algorithm, machine, args.bucket_mb, True, args.cores)
        batch = args.per_worker_batch * p
        per_epoch = data.n // batch
        if per_epoch < 1:
            raise StudyError(f"{p} ranks x {args.per_worker_batch} exceed the {data.n} training samples")
        pred_epochs = math.ceil(pred.steps / per_epoch)
        epochs = args.epochs or min(2 * pred_epochs + 2, 40)
        warm = min(max(round(0.5 * data.n / batch), 10), pred.steps) if recipe_warm else 0
        metrics = out / f"p{p}.jsonl"
        cmd = trainer_command(p, args, data, steps.lr(batch), warm / per_epoch, epochs, metrics)
        print(f"validate: p={p}: {' '.join(cmd[1:4])} ... ({epochs} epochs)", flush=True)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            raise StudyError(f"the {p}-rank trainer run did not finish in {args.timeout:g} s (--timeout)") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise StudyError(f"the {p}-rank trainer run failed (exit {proc.returncode}): {' / '.join(tail)}")
        got = measured(metrics, steps.target)
        rows.append(
            {
                "ranks": p,
                "global_batch": batch,
                "predicted_step": pred.step_time,
                "measured_step": got["step_time"],
                "predicted_compute": pred.compute,
                "predicted_exposed_comm": pred.exposed,
                "predicted_steps": pred.steps,
                "predicted_epochs": pred_epochs,
                "measured_epochs": got["epochs_to_target"],
                "predicted_time_to_target": pred_epochs * per_epoch * pred.step_time,
                "measured_time_to_target": got["time_to_target"],
                "final_accuracy": got["final_accuracy"],
            }
        )
    (out / "validation.json").write_text(json.dumps({"steps_model": steps.__dict__, "rows": rows}, indent=1) + "\n")
    print(table(rows, steps, args, machine))
    return 0


def calibrate(ranks: list[int], path: Path, timeout: float) -> str:
    """Measure this machine's per-message costs at each rank count (collectives.sim calibrate, median).

    The median, not the simulator's default minimum: under load from other processes the ranks
    wait for each other to be scheduled, and the trainer's steps pay the typical wait.
    """
    cmd = [sys.executable, "-m", "collectives.sim", "calibrate", "--quick", "--nprocs", ",".join(map(str, ranks))]
    cmd += ["--out", str(path)]
    print(f"validate: calibrating this machine's message costs at p = {', '.join(map(str, ranks))} ...", flush=True)
    env = dict(os.environ, COLLECTIVES_SIM_STATISTIC="median")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise StudyError(f"calibration did not finish in {timeout:g} s (--timeout); pass --no-calibrate") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
        raise StudyError(f"calibration failed (exit {proc.returncode}): {' / '.join(tail)}; pass --no-calibrate")
    return str(path)


def _recipe_warmup(recipe: str) -> bool:
    from minidl.study.recipes import RECIPES

    return RECIPES[recipe].warmup


def _err(pred: float, meas: float | None) -> str:
    if meas is None or not meas:
        return "-"
    e = pred / meas - 1
    return f"{100 * e:+.0f}%{'' if abs(e) <= TOLERANCE else ' !'}"


def table(rows: list[dict[str, Any]], steps: Any, args: Any, machine: Any) -> str:
    lines = [
        f"validation: target {steps.target:.2f} ({steps.recipe}), link {args.link}, {args.algorithm} allreduce, "
        f"{args.cores} cores shared (load average {os.getloadavg()[0]:.1f} at the end); "
        f"network model: {machine.describe()}",
        f"steps to target from {steps.source}",
        f"{'ranks':>5} {'batch':>6} | {'step ms pred':>12} {'meas':>7} {'err':>6} | {'epochs pred':>11} {'meas':>5} | "
        f"{'to target s pred':>16} {'meas':>7} {'err':>6}",
    ]
    for r in rows:
        meas_tta = r["measured_time_to_target"]
        lines.append(
            f"{r['ranks']:>5} {r['global_batch']:>6} | {1e3 * r['predicted_step']:>12.3g} "
            f"{1e3 * r['measured_step']:>7.3g} {_err(r['predicted_step'], r['measured_step']):>6} | "
            f"{r['predicted_epochs']:>11} {r['measured_epochs'] if r['measured_epochs'] else 'never':>5} | "
            f"{r['predicted_time_to_target']:>16.3g} {'never' if meas_tta is None else f'{meas_tta:.3g}':>7} "
            f"{_err(r['predicted_time_to_target'], meas_tta):>6}"
        )
    lines.append(f"('!' marks an error beyond {int(TOLERANCE * 100)}%; the first step is left out of measured times)")
    return "\n".join(lines)
