"""Data-parallel benchmarks: what overlap hides, what bucketing saves, what a second rank buys.

Four experiments, each a ratio measured in one run with baseline and candidate interleaved
(this machine's speed drifts 2-5x within seconds, so only paired ratios mean anything):

  overlap    mpiexec -n 2 python benchmarks/ddp_bench.py overlap
             ResNet-8 in 0.05 MiB buckets, on an emulated link sized so one step's allreduce
             takes about as long as its backward: the fraction of communication hidden by
             overlap (target >= 80%), the step time it saved as a share of the communication
             time, and the step-time ratio overlap-off / overlap-on. The link is re-sized before
             every repeat from the previous repeat's backward, since the machine's speed drifts,
             and corrected by the comm / backward the previous repeat measured (per-bucket
             latencies and software costs make the allreduce slower than the link alone).
  bucketing  mpiexec -n 2 python benchmarks/ddp_bench.py bucketing
             A ResNet (many small parameters): one allreduce per parameter vs 25 MiB buckets;
             messages per step and the step-time ratio.
  scaling    python benchmarks/ddp_bench.py scaling
             Launches 1-rank and 2-rank DDP runs and 2 independent processes (no DDP, no messages)
             in rotating order (one BLAS/numba thread per rank, no emulated delay) and reports
             throughput(2 ranks) / throughput(1 rank) (target >= 1.9) beside the ceiling the machine
             allows, throughput(2 independent) / throughput(1 rank).
  gradpath   git show OLD:minidl/distributed/ddp.py > /tmp/ddp_before.py
             mpiexec -n 2 python benchmarks/ddp_bench.py gradpath --model mlp --before /tmp/ddp_before.py
             The gradient's path to the wire before and after a change of DDP: the older class
             (loaded from its file) and the current one, each on its own replica of the model,
             interleaved; the step time of each and the ratio before / after (run on 1 rank too).

Each prints a table and, with --json PATH, writes the raw numbers (with the machine, its load
before and after every repeat, the versions and the command). ``report FILES`` rebuilds the
docs' overlap and scaling tables from such files:

  python benchmarks/ddp_bench.py report benchmarks/results/ddp/*.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(model: str) -> tuple[Any, tuple[int, ...]]:
    import minidl
    from minidl import models

    minidl.manual_seed(0)
    if model == "mlp":
        return models.MLP(784, (512, 512), 10), (784,)
    if model == "lenet":
        return models.LeNet5(10, 1, input_size=28), (1, 28, 28)
    if model == "resnet":
        return models.resnet8(), (3, 32, 32)
    raise SystemExit(f"unknown model {model!r}")


def time_steps(ddp: Any, model: Any, opt: Any, x: Any, y: Any, steps: int) -> dict[str, float]:
    """Median step time and the communication statistics of ``steps`` training steps."""
    import minidl.functional as F

    times, comm, exposed, messages, backward = [], [], [], [], []
    for _ in range(steps):
        start = time.perf_counter()
        loss = F.cross_entropy(ddp(x), y)
        mid = time.perf_counter()
        loss.backward()
        end_backward = time.perf_counter()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
        comm.append(ddp.stats.comm_seconds)
        exposed.append(ddp.stats.exposed_seconds)
        messages.append(ddp.stats.messages)
        backward.append(end_backward - mid - ddp.stats.exposed_seconds)
    return {
        "step": statistics.median(times),
        "comm": float(np.sum(comm)),
        "exposed": float(np.sum(exposed)),
        "backward": statistics.median(backward),
        "messages": statistics.median(messages),
        "steps": steps,
    }


def in_process(args: argparse.Namespace) -> None:
    """overlap / bucketing / gradpath: variants of DDP, each on its own replica of one model, interleaved."""
    import minidl
    from minidl import distributed as dist
    from minidl import optim
    from minidl.distributed import DistributedDataParallel
    from minidl.threads import configure_threads

    comm = dist.world()
    rank = comm.Get_rank()
    configure_threads(1)
    model, shape = build(args.model)
    rng = np.random.default_rng(rank)
    x = minidl.tensor(rng.standard_normal((args.batch, *shape)).astype(np.float32))
    y = rng.integers(0, 10, args.batch)

    link = None
    nbytes = sum(p.data.nbytes for p in model.parameters())
    if args.mode == "overlap":
        # Size the link so that the allreduce takes about one backward pass (and re-size it before every
        # repeat from the previous repeat's backward: the machine's speed drifts, see sized_link).
        probe = DistributedDataParallel(model, comm, overlap=False)
        time_steps(probe, model, optim.SGD(model.parameters(), lr=0.01), x, y, 2)
        base = time_steps(probe, model, optim.SGD(model.parameters(), lr=0.01), x, y, 5)
        probe.close()
        link = sized_link(base["backward"], nbytes, comm)
        cap = args.bucket_mb
        variants = {
            "overlap off": partial(DistributedDataParallel, overlap=False, bucket_cap_mb=cap, link=link),
            "overlap on": partial(DistributedDataParallel, overlap=True, bucket_cap_mb=cap, link=link),
        }
    elif args.mode == "bucketing":
        variants = {
            "per-parameter": partial(DistributedDataParallel, bucket_cap_mb=1e-6, first_bucket_mb=1e-6),
            "25 MiB buckets": partial(DistributedDataParallel, bucket_cap_mb=25.0),
        }
    else:
        after = load_ddp(args.after) if args.after else DistributedDataParallel
        variants = {"before": load_ddp(args.before), "after": after}
    runs = {}
    for name, make in variants.items():
        replica, _ = build(args.model)
        runs[name] = (make(replica, comm), replica, optim.SGD(replica.parameters(), lr=0.01, momentum=0.9))
    for run in runs.values():  # warm-up (and the first step's agreement check)
        time_steps(*run, x, y, 2)
    correction = 1.0
    if link is not None:  # the first repeat's link, corrected by what 3 steps without overlap measured on it
        off = time_steps(*runs[next(iter(runs))], x, y, 3)
        correction = link_correction(correction, off, comm, damping=1.0)
        link = sized_link(off["backward"], nbytes, comm, correction)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    links = []
    loads = [load_average()]
    names = list(runs)
    for _ in range(args.repeats):
        if link is not None:
            for ddp, _, _ in runs.values():
                ddp.link = link
            links.append({"bandwidth": link.bandwidth, "latency": link.latency})
        for name, run in runs.items():
            comm.Barrier()
            results[name].append(time_steps(*run, x, y, args.steps))
        if link is not None:  # the next repeat's link, from this repeat's backward without overlap
            off = results[names[0]][-1]
            correction = link_correction(correction, off, comm)
            link = sized_link(off["backward"], nbytes, comm, correction)
        loads.append(load_average())
    for ddp, _, _ in runs.values():
        ddp.close()
    if rank != 0:
        return
    base, cand = names[0], names[1]
    ratios = [b["step"] / c["step"] for b, c in zip(results[base], results[cand])]
    print(
        f"# {args.mode}: {args.model}, batch {args.batch}/rank, {comm.Get_size()} ranks, "
        f"{args.repeats} interleaved repeats of {args.steps} steps"
        + (f", bucket cap {args.bucket_mb} MiB, link re-sized per repeat (see below)" if link else "")
        + f"; load {loads[0]} -> {loads[-1]}"
    )
    # hidden comm can at most be about backward / comm: report both so a run can be judged
    print(
        f"{'variant':<16} {'step ms':>9} {'min-max':>15} {'backward ms':>12} {'comm ms':>9} {'messages/step':>14} "
        f"{'hidden comm':>12}"
    )
    for name in names:
        rows = results[name]
        steps = [r["step"] * 1e3 for r in rows]
        spread = f"{min(steps):.2f}-{max(steps):.2f}"
        backward = statistics.median(r["backward"] for r in rows) * 1e3
        comm_ms = sum(r["comm"] for r in rows) / (len(rows) * args.steps) * 1e3
        msgs = statistics.median(r["messages"] for r in rows)
        total = sum(r["comm"] for r in rows)
        hidden = 1 - sum(r["exposed"] for r in rows) / total if total else float("nan")
        print(
            f"{name:<16} {statistics.median(steps):>9.2f} {spread:>15} {backward:>12.2f} {comm_ms:>9.2f} "
            f"{msgs:>14.0f} {100 * hidden:>11.0f}%"
        )
    print(
        f"step-time ratio {base} / {cand}: median {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f})"
    )
    raw: dict[str, Any] = {"mode": args.mode, "results": results, "ratios": ratios}
    if args.mode == "overlap":
        raw["links"] = links
        raw["per_repeat"] = overlap_repeats(results[base], results[cand], links)
        print_overlap(raw["per_repeat"])
    raw["loads"] = loads
    raw["run"] = run_record(args)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))


def sized_link(backward: float, nbytes: int, comm: Any, correction: float = 1.0) -> Any:
    """An emulated link on which allreducing ``nbytes`` takes about ``backward`` seconds (the slowest rank's).

    Ring on 2 ranks: 2 steps of n/2 bytes each, each paying the 20 us latency; ``correction`` multiplies the
    bandwidth by what the link alone leaves out (see ``link_correction``).
    """
    from minidl import distributed as dist

    backward = float(dist.all_reduce(np.array([backward]), "max", comm=comm)[0])
    return dist.Link(latency=20e-6, bandwidth=correction * nbytes / max(backward - 40e-6, 1e-4))


def link_correction(correction: float, off: dict[str, float], comm: Any, damping: float = 0.5) -> float:
    """The bandwidth correction for the next link: the last one times (comm / backward) ** ``damping``, as
    measured without overlap (the slowest rank's), so that the allreduce, buckets' latencies and software
    included, comes to about one backward. Damped, and clamped to a factor of 2 per repeat, because the
    backward itself drifts from repeat to repeat: one disturbed repeat must not swing the next link."""
    from minidl import distributed as dist

    ratio = off["comm"] / off["steps"] / off["backward"] if off["backward"] > 0 else 1.0
    ratio = float(dist.all_reduce(np.array([ratio]), "max", comm=comm)[0])
    return correction * min(max(ratio, 0.5), 2.0) ** damping


def overlap_repeats(off: list[dict[str, float]], on: list[dict[str, float]], links: list[dict]) -> list[dict]:
    """Per repeat: how close communication came to backward, and two measures of what overlap hid.

    ``hidden`` is 1 - exposed / comm on the overlapping run (comm as the comm thread timed it);
    ``saved`` is the step time overlap saved over the communication time of the run without it,
    (step off - step on) / comm off per step, which no waiting inside the comm thread can inflate.
    """
    rows = []
    for a, b, link in zip(off, on, links):
        comm_off = a["comm"] / a["steps"]
        rows.append(
            {
                "backward_off": a["backward"],
                "comm_off_per_step": comm_off,
                "comm_over_backward": comm_off / a["backward"] if a["backward"] else float("nan"),
                "hidden": 1 - b["exposed"] / b["comm"] if b["comm"] else float("nan"),
                "saved": (a["step"] - b["step"]) / comm_off if comm_off else float("nan"),
                "step_ratio": a["step"] / b["step"],
                "bandwidth": link["bandwidth"],
            }
        )
    return rows


def print_overlap(rows: list[dict]) -> None:
    print(f"{'repeat':>6} {'backward ms':>12} {'comm/backward':>14} {'hidden':>7} {'saved':>6} {'off/on':>7}")
    for i, r in enumerate(rows):
        print(
            f"{i:>6} {r['backward_off'] * 1e3:>12.2f} {r['comm_over_backward']:>14.2f} {100 * r['hidden']:>6.0f}% "
            f"{100 * r['saved']:>5.0f}% {r['step_ratio']:>7.3f}"
        )
    for key in ("hidden", "saved"):
        vals = [r[key] for r in rows]
        print(
            f"{key}: median {100 * statistics.median(vals):.0f}% (min {100 * min(vals):.0f}%, "
            f"max {100 * max(vals):.0f}%) over {len(vals)} repeats"
        )


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def run_record(args: argparse.Namespace) -> dict[str, Any]:
    """Machine, load, versions (BLAS and MPI included) and the command, stored with the raw numbers."""
    from minidl.bench.report import machine_info

    info = machine_info()
    with contextlib.suppress(ImportError):
        from mpi4py import MPI

        info["mpi"] = MPI.Get_library_version().splitlines()[0]
    info["command"] = [Path(sys.executable).name, "benchmarks/ddp_bench.py", *sys.argv[1:]]
    info["date"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return info


def load_ddp(path: str | None) -> Any:
    """The ``DistributedDataParallel`` class of another ``ddp.py`` (for gradpath's --before and --after)."""
    if not path or not Path(path).is_file():
        raise SystemExit(f"gradpath: --before/--after must name a minidl/distributed/ddp.py, got {path!r}")
    spec = importlib.util.spec_from_file_location(f"ddp_{Path(path).stem}_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.DistributedDataParallel


def launch(ranks: int, args: argparse.Namespace, independent: bool = False) -> float:
    """Run one ``throughput`` worker on ``ranks`` ranks, one thread each; returns the number it prints."""
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MINIDL_THREADS="1")
    cmd = [mpiexec, "-n", str(ranks), sys.executable, str(Path(__file__).resolve()), "throughput"]
    cmd += ["--model", args.model, "--batch", str(args.batch), "--steps", str(args.steps)]
    cmd += ["--independent"] if independent else []
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=True).stdout
    return float(out.strip().splitlines()[-1])


# The scaling experiment's launches: DDP on 1 and 2 ranks, and 2 ranks training on their own (no DDP,
# no messages): what two processes get from this machine's two cores, the ceiling DDP can reach.
SCALING_RUNS = {"1 rank": (1, False), "2 ranks": (2, False), "2 independent": (2, True)}
SCALING_RATIOS = ("2 ranks / 1 rank", "2 independent / 1 rank", "2 ranks / 2 independent")


def _split(ratio: str) -> tuple[str, str]:
    num, den = ratio.split(" / ")
    return num, den


def scaling(args: argparse.Namespace) -> None:
    """Throughput of 2 ranks vs 1 and vs 2 independent processes, one thread each, launches in rotating order."""
    rates: dict[str, list[float]] = {name: [] for name in SCALING_RUNS}
    loads = []
    names = list(SCALING_RUNS)
    for i in range(args.repeats):
        loads.append(load_average())
        for name in names[i % 3 :] + names[: i % 3]:  # rotate, so no run always follows the same one
            ranks, independent = SCALING_RUNS[name]
            rates[name].append(launch(ranks, args, independent))
    loads.append(load_average())
    ratios = {
        f"{num} / {den}": [b / a for a, b in zip(rates[den], rates[num])] for num, den in map(_split, SCALING_RATIOS)
    }
    print(
        f"# scaling: {args.model}, batch {args.batch}/rank, 1 thread/rank, {args.repeats} launch triples in "
        f"rotating order; load {loads[0]} -> {loads[-1]}"
    )
    for name in names:
        print(f"{name}: {statistics.median(rates[name]):.0f} samples/s (median)")
    for name, values in ratios.items():
        print(f"{name}: median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})")
    if args.json:
        raw = {"mode": "scaling", "rates": rates, "ratios": ratios, "loads": loads, "run": run_record(args)}
        Path(args.json).write_text(json.dumps(raw, indent=1))


def throughput(args: argparse.Namespace) -> None:
    """One launch of the scaling experiment: prints global samples/s (rank 0)."""
    import minidl
    import minidl.functional as F
    from minidl import optim
    from minidl.distributed import DistributedDataParallel, world
    from minidl.threads import configure_threads

    comm = world()
    configure_threads(1)
    model, shape = build(args.model)
    rng = np.random.default_rng(comm.Get_rank())
    x = minidl.tensor(rng.standard_normal((args.batch, *shape)).astype(np.float32))
    y = rng.integers(0, 10, args.batch)
    ddp = None if args.independent else DistributedDataParallel(model, comm)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train(steps: int) -> None:
        for _ in range(steps):
            F.cross_entropy((ddp or model)(x), y).backward()
            opt.step()
            opt.zero_grad()

    train(3)
    comm.Barrier()
    start = time.perf_counter()
    train(args.steps)
    comm.Barrier()
    elapsed = time.perf_counter() - start
    if ddp is not None:
        ddp.close()
    if comm.Get_rank() == 0:
        print(args.steps * args.batch * comm.Get_size() / elapsed)


def report(paths: list[str]) -> None:
    """Markdown rows rebuilt from raw JSON files of ``overlap`` and ``scaling`` (the docs' tables)."""

    def spread(values: list[float], scale: float = 1.0, fmt: str = ".2f") -> str:
        v = [x * scale for x in values]
        return f"{statistics.median(v):{fmt}} ({min(v):{fmt}}-{max(v):{fmt}})"

    overlap, scaling_rows = [], []
    for path in paths:
        raw = json.loads(Path(path).read_text())
        loads = raw.get("loads") or []
        load = "-" if not loads or loads[0] is None else f"{loads[0][0]:.1f}-{loads[-1][0]:.1f}"
        name = Path(path).name
        if raw["mode"] == "overlap":
            rows = raw.get("per_repeat")
            if rows:
                cells = [
                    spread([r["hidden"] for r in rows], 100, ".0f"),
                    spread([r["saved"] for r in rows], 100, ".0f"),
                    spread([r["comm_over_backward"] for r in rows]),
                    spread([r["step_ratio"] for r in rows], 1, ".3f"),
                ]
            else:  # the older format: totals only
                on = raw["results"]["overlap on"]
                hidden = 1 - sum(r["exposed"] for r in on) / sum(r["comm"] for r in on)
                cells = [f"{100 * hidden:.0f} (all repeats)", "-", "-", spread(raw["ratios"], 1, ".3f")]
            overlap.append(f"| {name} | {load} | " + " | ".join(cells) + " |")
        elif raw["mode"] == "scaling":
            ratios = raw["ratios"]
            if isinstance(ratios, dict):
                cells = [spread(ratios[k]) for k in SCALING_RATIOS]
            else:  # the older format: 2 ranks / 1 rank only
                cells = [spread(ratios), "-", "-"]
            scaling_rows.append(f"| {name} | {load} | " + " | ".join(cells) + " |")
    if overlap:
        print("| run | load | hidden % | saved % | comm / backward | step time off / on |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        print("\n".join(overlap))
    if scaling_rows:
        print("| run | load | 2 ranks / 1 rank | 2 independent / 1 rank | 2 ranks / 2 independent |")
        print("| --- | --- | ---: | ---: | ---: |")
        print("\n".join(scaling_rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("overlap", "bucketing", "gradpath", "scaling", "throughput", "report"))
    p.add_argument("files", nargs="*", help="report: raw JSON files of overlap and scaling runs")
    p.add_argument("--model", choices=("mlp", "lenet", "resnet"), default="resnet", help="default: resnet (ResNet-8)")
    p.add_argument("--batch", type=int, default=32, help="samples per rank (default: 32)")
    p.add_argument("--steps", type=int, default=10, help="steps per measurement (default: 10)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (default: 5)")
    p.add_argument("--bucket-mb", type=float, default=0.05, help="bucket size (MiB) for overlap (default: 0.05)")
    p.add_argument("--before", metavar="FILE", help="gradpath: an older minidl/distributed/ddp.py to compare with")
    p.add_argument("--after", metavar="FILE", help="gradpath: another ddp.py in place of the current one")
    p.add_argument("--json", help="write the raw numbers here")
    p.add_argument("--independent", action="store_true", help=argparse.SUPPRESS)  # throughput: no DDP
    args = p.parse_args()
    if args.mode == "report":
        if not args.files:
            p.error("report needs the raw JSON files to tabulate, e.g. benchmarks/results/ddp/*.json")
        return report(args.files)
    if args.files:
        p.error(f"unexpected arguments {' '.join(args.files)!r} (files are for report)")
    if args.mode != "scaling":  # under mpiexec: an error on one rank ends the job instead of a hang
        from minidl import distributed as dist

        dist.abort_on_error()
    if args.mode == "scaling":
        scaling(args)
    elif args.mode == "throughput":
        throughput(args)
    else:
        in_process(args)


if __name__ == "__main__":
    main()
