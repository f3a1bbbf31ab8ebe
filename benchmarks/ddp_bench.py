"""Data-parallel benchmarks: what overlap hides, what bucketing saves, what a second rank buys.

Four experiments, each a ratio measured in one run with baseline and candidate interleaved
(this machine's speed drifts 2-5x within seconds, so only paired ratios mean anything):

  overlap    mpiexec -n 2 python benchmarks/ddp_bench.py overlap
             ResNet-8 in 0.05 MiB buckets, on an emulated link sized so one step's allreduce
             takes about as long as its backward: the fraction of communication hidden by
             overlap (target >= 60%) and the step-time ratio overlap-off / overlap-on.
  bucketing  mpiexec -n 2 python benchmarks/ddp_bench.py bucketing
             A ResNet (many small parameters): one allreduce per parameter vs 25 MiB buckets;
             messages per step and the step-time ratio.
  scaling    python benchmarks/ddp_bench.py scaling
             Launches 1-rank and 2-rank runs alternately (one BLAS/numba thread per rank, no
             emulated delay) and reports throughput(2 ranks) / throughput(1 rank) (target >= 1.6).
  gradpath   git show OLD:minidl/distributed/ddp.py > /tmp/ddp_before.py
             mpiexec -n 2 python benchmarks/ddp_bench.py gradpath --model mlp --before /tmp/ddp_before.py
             The gradient's path to the wire before and after a change of DDP: the older class
             (loaded from its file) and the current one, each on its own replica of the model,
             interleaved; the step time of each and the ratio before / after (run on 1 rank too).

Each prints a table and, with --json PATH, writes the raw numbers.
"""

from __future__ import annotations

import argparse
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
    if args.mode == "overlap":
        # Size the link so that the allreduce takes about one backward pass.
        probe = DistributedDataParallel(model, comm, overlap=False)
        base = time_steps(probe, model, optim.SGD(model.parameters(), lr=0.01), x, y, 5)
        probe.close()
        backward = float(dist.all_reduce(np.array([base["backward"]]), "max", comm=comm)[0])
        nbytes = sum(p.data.nbytes for p in model.parameters())
        # ring on 2 ranks: 2 steps of n/2 bytes each; latency small next to the transfer
        link = dist.Link(latency=20e-6, bandwidth=nbytes / max(backward - 40e-6, 1e-4))
        variants = {
            "overlap off": partial(DistributedDataParallel, overlap=False, bucket_cap_mb=args.bucket_mb, link=link),
            "overlap on": partial(DistributedDataParallel, overlap=True, bucket_cap_mb=args.bucket_mb, link=link),
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
    results: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            comm.Barrier()
            results[name].append(time_steps(*run, x, y, args.steps))
    for ddp, _, _ in runs.values():
        ddp.close()
    if rank != 0:
        return
    names = list(runs)
    base, cand = names[0], names[1]
    ratios = [b["step"] / c["step"] for b, c in zip(results[base], results[cand])]
    print(
        f"# {args.mode}: {args.model}, batch {args.batch}/rank, {comm.Get_size()} ranks, "
        f"{args.repeats} interleaved repeats of {args.steps} steps" + (f", link {link}" if link else "")
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
    if args.json:
        Path(args.json).write_text(json.dumps({"mode": args.mode, "results": results, "ratios": ratios}, indent=1))


def load_ddp(path: str | None) -> Any:
    """The ``DistributedDataParallel`` class of another ``ddp.py`` (for gradpath's --before and --after)."""
    if not path or not Path(path).is_file():
        raise SystemExit(f"gradpath: --before/--after must name a minidl/distributed/ddp.py, got {path!r}")
    spec = importlib.util.spec_from_file_location(f"ddp_{Path(path).stem}_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.DistributedDataParallel


def launch(mode: str, ranks: int, args: argparse.Namespace) -> float:
    """Run one ``throughput`` worker on ``ranks`` ranks, one thread each; returns the number it prints."""
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MINIDL_THREADS="1")
    cmd = [mpiexec, "-n", str(ranks), sys.executable, str(Path(__file__).resolve()), mode]
    cmd += ["--model", args.model, "--batch", str(args.batch), "--steps", str(args.steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=True).stdout
    return float(out.strip().splitlines()[-1])


def scaling(args: argparse.Namespace) -> None:
    """Throughput of 2 ranks vs 1, each with one thread, launches alternating."""
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for p in (1, 2):
            rates[p].append(launch("throughput", p, args))
    ratios = [b / a for a, b in zip(rates[1], rates[2])]
    print(f"# scaling: {args.model}, batch {args.batch}/rank, 1 thread/rank, {args.repeats} alternating launch pairs")
    for p in (1, 2):
        print(f"{p} rank(s): {statistics.median(rates[p]):.0f} samples/s (median)")
    print(
        f"speed-up 2 ranks / 1 rank: median {statistics.median(ratios):.2f} "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"mode": "scaling", "rates": rates, "ratios": ratios}, indent=1))


def throughput(args: argparse.Namespace) -> None:
    """One launch of the scaling experiment: prints global samples/s (rank 0)."""
    import minidl
    from minidl import optim
    from minidl.distributed import DistributedDataParallel, world
    from minidl.threads import configure_threads

    comm = world()
    configure_threads(1)
    model, shape = build(args.model)
    rng = np.random.default_rng(comm.Get_rank())
    x = minidl.tensor(rng.standard_normal((args.batch, *shape)).astype(np.float32))
    y = rng.integers(0, 10, args.batch)
    ddp = DistributedDataParallel(model, comm)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    time_steps(ddp, model, opt, x, y, 3)
    comm.Barrier()
    start = time.perf_counter()
    time_steps(ddp, model, opt, x, y, args.steps)
    comm.Barrier()
    elapsed = time.perf_counter() - start
    ddp.close()
    if comm.Get_rank() == 0:
        print(args.steps * args.batch * comm.Get_size() / elapsed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("overlap", "bucketing", "gradpath", "scaling", "throughput"))
    p.add_argument("--model", choices=("mlp", "lenet", "resnet"), default="resnet", help="default: resnet (ResNet-8)")
    p.add_argument("--batch", type=int, default=32, help="samples per rank (default: 32)")
    p.add_argument("--steps", type=int, default=10, help="steps per measurement (default: 10)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (default: 5)")
    p.add_argument("--bucket-mb", type=float, default=0.05, help="bucket size (MiB) for overlap (default: 0.05)")
    p.add_argument("--before", metavar="FILE", help="gradpath: an older minidl/distributed/ddp.py to compare with")
    p.add_argument("--after", metavar="FILE", help="gradpath: another ddp.py in place of the current one")
    p.add_argument("--json", help="write the raw numbers here")
    args = p.parse_args()
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
