"""Data-parallel benchmarks: what overlap hides, what bucketing saves, what a second rank buys.

Three experiments, each a ratio measured in one run with baseline and candidate interleaved
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

Each prints a table and, with --json PATH, writes the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
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
    """overlap / bucketing: variants of DDP on one model, interleaved in one launch."""
    from mpi4py import MPI

    import minidl
    from minidl import optim
    from minidl.distributed import DistributedDataParallel
    from minidl.threads import configure_threads

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    configure_threads(1)
    model, shape = build(args.model)
    rng = np.random.default_rng(rank)
    x = minidl.tensor(rng.standard_normal((args.batch, *shape)).astype(np.float32))
    y = rng.integers(0, 10, args.batch)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    link = None
    if args.mode == "overlap":
        # Size the link so that the allreduce takes about one backward pass.
        probe = DistributedDataParallel(model, comm, overlap=False)
        base = time_steps(probe, model, opt, x, y, 5)
        probe.close()
        backward = comm.allreduce(base["backward"], op=MPI.MAX)
        nbytes = sum(p.data.nbytes for p in model.parameters())
        from collectives.emulation import Link

        # ring on 2 ranks: 2 steps of n/2 bytes each; latency small next to the transfer
        link = Link(latency=20e-6, bandwidth=nbytes / max(backward - 40e-6, 1e-4))
        variants = {
            "overlap off": dict(overlap=False, bucket_cap_mb=args.bucket_mb),
            "overlap on": dict(overlap=True, bucket_cap_mb=args.bucket_mb),
        }
    else:
        variants = {
            "per-parameter": dict(overlap=True, bucket_cap_mb=1e-6, first_bucket_mb=1e-6),
            "25 MiB buckets": dict(overlap=True, bucket_cap_mb=25.0),
        }
    kwargs = {"allreduce_kwargs": {"link": link}} if link else {}
    ddps = {name: DistributedDataParallel(model, comm, **v, **kwargs) for name, v in variants.items()}
    for d in ddps.values():  # warm-up (and the first step's agreement check)
        time_steps(d, model, opt, x, y, 2)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in ddps}
    for _ in range(args.repeats):
        for name, d in ddps.items():
            comm.Barrier()
            results[name].append(time_steps(d, model, opt, x, y, args.steps))
    for d in ddps.values():
        d.close()
    if rank != 0:
        return
    names = list(ddps)
    base, cand = names[0], names[1]
    ratios = [b["step"] / c["step"] for b, c in zip(results[base], results[cand])]
    print(
        f"# {args.mode}: {args.model}, batch {args.batch}/rank, {comm.Get_size()} ranks, "
        f"{args.repeats} interleaved repeats of {args.steps} steps" + (f", link {link}" if link else "")
    )
    # hidden comm can at most be about backward / comm: report both so a run can be judged
    print(
        f"{'variant':<16} {'step ms':>9} {'backward ms':>12} {'comm ms':>9} {'messages/step':>14} {'hidden comm':>12}"
    )
    for name in names:
        rows = results[name]
        step = statistics.median(r["step"] for r in rows) * 1e3
        backward = statistics.median(r["backward"] for r in rows) * 1e3
        comm_ms = sum(r["comm"] for r in rows) / (len(rows) * args.steps) * 1e3
        msgs = statistics.median(r["messages"] for r in rows)
        total = sum(r["comm"] for r in rows)
        hidden = 1 - sum(r["exposed"] for r in rows) / total if total else float("nan")
        print(f"{name:<16} {step:>9.2f} {backward:>12.2f} {comm_ms:>9.2f} {msgs:>14.0f} {100 * hidden:>11.0f}%")
    print(
        f"step-time ratio {base} / {cand}: median {statistics.median(ratios):.2f} "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"mode": args.mode, "results": results, "ratios": ratios}, indent=1))


def scaling(args: argparse.Namespace) -> None:
    """Throughput of 2 ranks vs 1, each with one thread, launches alternating."""
    here = Path(__file__).resolve()
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MINIDL_THREADS="1")
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for p in (1, 2):
            cmd = [
                mpiexec,
                "-n",
                str(p),
                sys.executable,
                str(here),
                "throughput",
                "--model",
                args.model,
                "--batch",
                str(args.batch),
                "--steps",
                str(args.steps),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=True).stdout
            rates[p].append(float(out.strip().splitlines()[-1]))
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
    from mpi4py import MPI

    import minidl
    from minidl import optim
    from minidl.distributed import DistributedDataParallel
    from minidl.threads import configure_threads

    comm = MPI.COMM_WORLD
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
    p.add_argument("mode", choices=("overlap", "bucketing", "scaling", "throughput"))
    p.add_argument("--model", choices=("mlp", "lenet", "resnet"), default="resnet", help="default: resnet (ResNet-8)")
    p.add_argument("--batch", type=int, default=32, help="samples per rank (default: 32)")
    p.add_argument("--steps", type=int, default=10, help="steps per measurement (default: 10)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (default: 5)")
    p.add_argument("--bucket-mb", type=float, default=0.05, help="bucket size (MiB) for overlap (default: 0.05)")
    p.add_argument("--json", help="write the raw numbers here")
    args = p.parse_args()
    if args.mode == "scaling":
        scaling(args)
    elif args.mode == "throughput":
        throughput(args)
    else:
        in_process(args)


if __name__ == "__main__":
    main()
