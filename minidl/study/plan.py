"""``plan``: predicted time to accuracy against the number of workers, per allreduce algorithm."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from minidl.study.errors import StudyError
from minidl.study.options import HelpFormatter
from minidl.study.planner import (
    ComputeProfile,
    Prediction,
    StepsModel,
    best,
    measure_compute,
    predict_all,
    reason,
    steps_from_noise_scale,
    steps_from_study,
)


def add_parser(sub: Any) -> None:
    from minidl.experiments import DATASETS, MODELS

    p = sub.add_parser(
        "plan",
        help="predicted time to accuracy vs workers per allreduce algorithm",
        description="Predict time to a target accuracy on 1..4096 workers for each allreduce algorithm on a "
        "simulated interconnect: compute per step measured here (divided by --device-speed), the gradient's "
        "buckets timed by collectives.sim and overlapped with backward, steps to target from a batch-scaling "
        "study (--study) or, without one, from the gradient noise scale of one short run.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--study", help="a batch-scaling results directory (steps to target vs batch)")
    p.add_argument("--recipe", help="which of the study's recipes (default: the one with fewest steps)")
    p.add_argument("--target", type=float, help="target accuracy (default: the study's, or 0.9 without one)")
    p.add_argument("--dataset", choices=DATASETS, metavar="NAME", help="default: the study's, else digits")
    p.add_argument("--model", choices=MODELS, metavar="NAME", help="default: the study's / the dataset's")
    p.add_argument("--hidden", help="MLP hidden widths (default: the study's, else 128)")
    p.add_argument("--data-dir", help="directory of MNIST-format IDX files")
    p.add_argument("--per-worker-batch", type=int, default=32, help="samples per worker per step")
    p.add_argument("--workers", default="1..4096", help="LO..HI (powers of two) or a list")
    p.add_argument("--algorithms", help="comma-separated allreduce algorithms (default: all)")
    p.add_argument(
        "--preset", default="ib-edr", help="link preset of collectives.sim (see python -m collectives.sim presets)"
    )
    p.add_argument(
        "--topology", default="full", help="topology spec of collectives.sim (full, ring, fat-tree:..., ...)"
    )
    p.add_argument("--link", help="an emulated alpha-beta link BW,LATENCY instead of a preset, e.g. 1Gbps,50us")
    p.add_argument("--profile", help="a 'python -m collectives.sim calibrate' profile of the machine (with --link)")
    p.add_argument("--device", default="cpu", help="where reductions run: cpu, a100, h100")
    p.add_argument("--device-speed", type=float, default=1.0, help="compute speed relative to this machine")
    p.add_argument("--cores", type=int, help="all workers share this many cores (models an oversubscribed node)")
    p.add_argument("--bucket-mb", type=float, default=25.0, help="the trainer's gradient bucket size")
    p.add_argument("--no-overlap", action="store_true", help="allreduce after backward instead of during it")
    p.add_argument("--out", help="directory for plan.json and the plots (default: no files)")
    p.add_argument("--threads", type=int, default=1, help="BLAS/numba threads for the compute measurement")
    p.set_defaults(run=cmd_plan, parser=p)


def parse_workers(text: str) -> list[int]:
    from minidl.study.options import power_range

    try:
        workers = list(power_range(text))
    except argparse.ArgumentTypeError as e:
        raise StudyError(f"--workers: {e}") from None
    if min(workers) < 1:
        raise StudyError(f"--workers must be at least 1, got {text!r}")
    return workers


def setup(args: argparse.Namespace) -> tuple[Any, StepsModel, ComputeProfile, Any, list[str]]:
    """Data, steps model, measured compute, machine and algorithms from the plan/validate options."""
    from minidl.distributed import predict
    from minidl.study.results import read_config
    from minidl.study.training import load_study_data
    from minidl.threads import configure_threads

    configure_threads(args.threads)
    stored = read_config(Path(args.study)) if args.study else {}
    dataset = args.dataset or stored.get("dataset", "digits")
    model = args.model or (stored.get("model") if dataset == stored.get("dataset", "digits") else None)
    hidden = tuple(stored.get("hidden", (128,)))
    if args.hidden:
        try:
            hidden = tuple(int(h) for h in args.hidden.split(","))
        except ValueError:
            raise StudyError(f"--hidden must be comma-separated integers, got {args.hidden!r}") from None
    if args.per_worker_batch < 1 or args.device_speed <= 0 or args.bucket_mb <= 0:
        raise StudyError("--per-worker-batch, --device-speed and --bucket-mb must be positive")
    names = predict.algorithms()
    chosen = names if not args.algorithms else [a.strip() for a in args.algorithms.split(",") if a.strip()]
    for a in chosen:
        if a not in names:
            raise StudyError(f"unknown allreduce algorithm {a!r}; expected some of {', '.join(names)}")
    try:
        machine = predict.machine(args.preset, args.topology, args.link, args.device, getattr(args, "profile", None))
    except (ValueError, KeyError, OSError) as e:
        raise StudyError(str(e)) from None
    data = load_study_data(dataset, model, hidden, getattr(args, "data_dir", None), stored.get("train_size"))
    if args.study:
        steps = steps_from_study(args.study, args.recipe, args.target)
    else:
        steps = steps_from_noise_scale(data, args.per_worker_batch, args.target or 0.9, args.recipe or "momentum")
    compute = measure_compute(data, args.per_worker_batch).scaled(args.device_speed)
    return data, steps, compute, machine, chosen


def cmd_plan(args: argparse.Namespace) -> int:
    workers = parse_workers(args.workers)
    data, steps, compute, machine, algorithms = setup(args)
    preds = predict_all(compute, steps, workers, algorithms, machine, args.bucket_mb, not args.no_overlap, args.cores)
    print(render(preds, steps, compute, machine, data, args))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "plan.json").write_text(json.dumps(as_json(preds, steps, compute, machine), indent=1) + "\n")
        files = plot(preds, workers, algorithms, out, title=f"{data.model} on {data.dataset}, {machine.describe()}")
        print("wrote " + ", ".join(str(f) for f in [out / "plan.json", *files]))
    return 0


def render(
    preds: list[Prediction], steps: StepsModel, compute: ComputeProfile, machine: Any, data: Any, args: Any
) -> str:
    algorithms = list(dict.fromkeys(x.algorithm for x in preds))
    workers = sorted({x.workers for x in preds})
    by = {(x.workers, x.algorithm): x for x in preds}
    head = [
        f"plan: {data.model} on {data.dataset}, {compute.batch} samples per worker, target accuracy {steps.target:.2f} "
        f"({steps.recipe})",
        f"  steps to target: S(B) = {steps.s_min:.0f} x (1 + {steps.b_crit:.0f} / B), {steps.source}",
        f"  compute per step measured here: forward {compute.forward * 1e3:.3g} ms, backward "
        f"{compute.backward * 1e3:.3g} ms, optimizer {compute.optimizer * 1e3:.3g} ms "
        f"(device speed x{args.device_speed:g})"
        + (f", {args.cores} cores shared by all workers" if args.cores else ""),
        f"  gradient {sum(compute.param_bytes) / 1e6:.3g} MB in the trainer's {args.bucket_mb:g} MiB buckets, "
        f"overlap {'off' if args.no_overlap else 'on'}; network: {machine.describe()}",
        "",
        "predicted time to target (seconds) per allreduce algorithm:",
        f"{'workers':>7} {'batch':>7} {'steps':>7} {'compute':>9} " + " ".join(f"{a[:12]:>12}" for a in algorithms),
    ]
    for p in workers:
        first = by[(p, algorithms[0])]
        cells = []
        for a in algorithms:
            t = by[(p, a)].time_to_target
            cells.append(f"{t:>12.4g}" if math.isfinite(t) else f"{'-':>12}")
        head.append(
            f"{p:>7} {first.global_batch:>7} {first.steps:>7.1f} {first.compute * 1e3:>7.3g}ms " + " ".join(cells)
        )
    win = best(preds)
    one = by.get((1, win.algorithm))
    speedup = (
        f", {one.time_to_target / win.time_to_target:.1f}x faster than 1 worker" if one and win.workers > 1 else ""
    )
    head += [
        "",
        f"best: {win.workers} workers with {win.algorithm}: {win.time_to_target:.4g} s to {steps.target:.2f} "
        f"({win.steps:.0f} steps of {win.step_time * 1e3:.3g} ms, global batch {win.global_batch}){speedup}.",
        "why: " + reason(preds, steps),
    ]
    return "\n".join(head)


def as_json(preds: list[Prediction], steps: StepsModel, compute: ComputeProfile, machine: Any) -> dict[str, Any]:
    def clean(x: float) -> float | None:
        return x if math.isfinite(x) else None

    return {
        "steps_model": steps.__dict__,
        "compute": {k: v for k, v in compute.__dict__.items() if k != "param_bytes"}
        | {"gradient_bytes": sum(compute.param_bytes)},
        "machine": machine.describe(),
        "predictions": [
            {
                "workers": x.workers,
                "algorithm": x.algorithm,
                "global_batch": x.global_batch,
                "steps": x.steps,
                "compute": x.compute,
                "comm": clean(x.comm),
                "exposed": clean(x.exposed),
                "step_time": clean(x.step_time),
                "time_to_target": clean(x.time_to_target),
            }
            for x in preds
        ],
    }


def plot(preds: list[Prediction], workers: list[int], algorithms: list[str], out: Path, title: str) -> list[Path]:
    from minidl.study.plots import pyplot

    plt = pyplot()
    by = {(x.workers, x.algorithm): x for x in preds}
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    for a in algorithms:
        pts = [(p, by[(p, a)]) for p in workers if math.isfinite(by[(p, a)].time_to_target)]
        if not pts:
            continue
        ax.plot([p for p, _ in pts], [x.time_to_target for _, x in pts], marker="o", ms=3, label=a)
        base = by.get((workers[0], a))
        if base is not None and math.isfinite(base.step_time):
            eff = [base.step_time / x.step_time * (base.workers) for _, x in pts]
            ax2.plot([p for p, _ in pts], eff, marker="o", ms=3, label=a)
    ax.set(xscale="log", yscale="log", xlabel="workers", ylabel="predicted time to target (s)", title=title)
    ax.legend(fontsize=8)
    ax2.set(
        xscale="log",
        xlabel="workers",
        ylabel=f"scaling efficiency (samples/s per worker vs {workers[0]} worker)",
        title="throughput scaling efficiency",
    )
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path = out / "plan.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
