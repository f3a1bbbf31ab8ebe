"""Communication hooks on an emulated link: time per step and bytes on the wire, each hook against plain DDP.

    mpiexec -n 2 python benchmarks/comm_hooks_bench.py --link 10Mbps,100us --json out.json

Every hook gets its own replica of the trainer's digits MLP wrapped in its own
DistributedDataParallel over the link, and the replicas take their steps in turn (hook A's step
1, hook B's step 1, ..., then step 2), so load drift on a shared machine hits all of them alike;
the first steps are dropped. Printed per hook: median step time, median time in the hook's
communication (DDP's comm_seconds), bytes a rank sends per step, and the median of the per-round
ratios step time(none) / step time(hook).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
from mpi4py import MPI

import minidl
import minidl.functional as F
from minidl import optim
from minidl.distributed import DistributedDataParallel, make_comm_hook
from minidl.experiments import build_model, load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--link", default="10Mbps,100us", help="emulated link (default: 10Mbps,100us)")
    parser.add_argument(
        "--hooks",
        default="none;powersgd:rank=2;topk:ratio=0.01;fp16;bf16",
        help="';'-separated specs, first = baseline",
    )
    parser.add_argument("--steps", type=int, default=40, help="steps per hook (default: 40)")
    parser.add_argument("--warmup", type=int, default=5, help="first steps not timed (default: 5)")
    parser.add_argument("--batch-size", type=int, default=32, help="per rank (default: 32)")
    parser.add_argument("--json", help="write the raw numbers here (rank 0)")
    args = parser.parse_args()
    hooks = [h.strip() for h in args.hooks.split(";") if h.strip()]
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    train, _, info = load_dataset("digits", None, None, 0)
    x, y = train[np.arange(len(train))]
    rng = np.random.default_rng(rank)
    runs = []
    for spec in hooks:
        minidl.manual_seed(0)
        model = build_model("mlp", info, (128,))
        ddp = DistributedDataParallel(model, comm, link=args.link)
        state, hook = make_comm_hook(spec)
        if hook is not None:
            ddp.register_comm_hook(state, hook)
        runs.append({"spec": spec, "ddp": ddp, "opt": optim.SGD(model.parameters(), lr=0.05, momentum=0.9)})
        runs[-1].update(total=[], comm=[], wire=[])
    for step in range(args.steps):
        for run in runs:
            idx = rng.integers(0, len(y), args.batch_size)
            comm.Barrier()
            start = time.perf_counter()
            loss = F.cross_entropy(run["ddp"](minidl.tensor(x[idx])), y[idx])
            run["opt"].zero_grad()
            loss.backward()
            run["opt"].step()
            elapsed = time.perf_counter() - start
            if step >= args.warmup:
                run["total"].append(elapsed)
                run["comm"].append(run["ddp"].stats.comm_seconds)
                run["wire"].append(run["ddp"].stats.wire_bytes)
    base = runs[0]["total"]
    rows = []
    for run in runs:
        ratios = [b / t for b, t in zip(base, run["total"])]
        rows.append(
            {
                "comm_hook": run["spec"],
                "median_step_seconds": statistics.median(run["total"]),
                "median_comm_seconds": statistics.median(run["comm"]),
                "wire_bytes_per_step": statistics.mean(run["wire"]),
                "speedup_vs_first": statistics.median(ratios),
                "steps": run["total"],
            }
        )
        run["ddp"].close()
    if rank == 0:
        print(f"{size} ranks, link {args.link}, {args.steps - args.warmup} timed steps each, load {os.getloadavg()}")
        print(f"{'hook':<20} {'step ms':>8} {'comm ms':>8} {'KiB/step':>9} {'speed-up':>8}")
        for r in rows:
            print(
                f"{r['comm_hook']:<20} {1e3 * r['median_step_seconds']:8.1f} {1e3 * r['median_comm_seconds']:8.1f} "
                f"{r['wire_bytes_per_step'] / 2**10:9.1f} {r['speedup_vs_first']:7.2f}x"
            )
        if args.json:
            raw = {"ranks": size, "link": args.link, "load_average": os.getloadavg(), "rows": rows}
            with open(args.json, "w") as f:
                json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
