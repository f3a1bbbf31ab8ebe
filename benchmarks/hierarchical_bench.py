"""Hierarchical allreduce: the simulator's prediction against a run on this machine.

    mpiexec -n 4 python benchmarks/hierarchical_bench.py --ranks-per-node 2 --link 1Gbps,200us \\
        --json benchmarks/results/hierarchical/p4-k2.json

The machine is one node; ``--ranks-per-node`` makes blocks of ranks pretend to be nodes. Inside a
"node" messages go through shared memory at full speed; between the node leaders the link is
emulated (``link=`` applies to the leaders' communicator only). The prediction is
``collectives.sim`` on its nodes x accelerators topology with the same inter-node link and an
intra-node link measured here first (a ping-pong between ranks 0 and 1), plus the reduction
speed measured here (numpy's add). As a control the flat ring runs over the emulated link for
every message (what the link emulation can do without nodes) and is predicted on a fully
connected network of that link. The simulator also predicts the flat ring on the two-level
machine, which this machine cannot emulate.

Timings are the slowest rank's, medians over ``--reps`` interleaved repetitions (the order
alternates), with the load average recorded: this machine is shared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
from mpi4py import MPI

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collectives import allreduce, parse_link  # noqa: E402
from collectives.algorithms import ALGORITHMS  # noqa: E402
from collectives.algorithms.hierarchical import NodeLayout, hierarchical  # noqa: E402
from collectives.bench.runinfo import load_average  # noqa: E402
from collectives.hierarchical import hierarchical_allreduce  # noqa: E402
from collectives.link import Link, format_time  # noqa: E402
from collectives.sim import CostModel, Hierarchical, simulate  # noqa: E402


def ping_pong(comm: MPI.Intracomm, nbytes: int, reps: int) -> float:
    """Median one-way time of an ``nbytes`` message between ranks 0 and 1 (the others idle)."""
    buf = np.zeros(max(nbytes, 1), np.uint8)
    times = []
    for _ in range(reps):
        comm.Barrier()
        start = time.perf_counter()
        if comm.rank == 0:
            comm.Send(buf, 1)
            comm.Recv(buf, 1)
        elif comm.rank == 1:
            comm.Recv(buf, 0)
            comm.Send(buf, 0)
        times.append((time.perf_counter() - start) / 2)
    return statistics.median(times)


def reduce_seconds_per_byte(nbytes: int, reps: int) -> float:
    a, b = np.ones(nbytes // 4, np.float32), np.ones(nbytes // 4, np.float32)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        np.add(a, b, out=a)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / nbytes


def slowest(comm: MPI.Intracomm, seconds: float) -> float:
    return comm.allreduce(seconds, op=MPI.MAX)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks-per-node", type=int, default=2)
    parser.add_argument("--link", default="1Gbps,200us", help="the emulated link between nodes")
    parser.add_argument("--intra", help="the link inside a node for the prediction (default: measured here)")
    parser.add_argument("--sizes", default="16384,262144,1048576", help="bytes per rank, comma-separated")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--json", help="write the raw numbers here")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    p, rank, k = comm.size, comm.rank, args.ranks_per_node
    if p < 2 or k >= p:
        raise SystemExit("run on at least 2 ranks and at least two nodes (--ranks-per-node below the rank count)")
    inter = parse_link(args.link)
    layout = NodeLayout.blocks(p, k)
    sizes = [int(s) for s in args.sizes.split(",")]
    load_before = load_average()

    # The machine, measured: shared-memory messages and numpy's reduction.
    small, large = ping_pong(comm, 8, 50), ping_pong(comm, max(sizes), 20)
    intra = parse_link(args.intra) if args.intra else Link(small, max(sizes) / max(large - small, 1e-9))
    gamma = reduce_seconds_per_byte(max(sizes), 20)

    rows = []
    for nbytes in sizes:
        n = nbytes // 4
        x = np.ones(n, np.float32)
        measured: dict[str, list[float]] = {"hierarchical": [], "flat": []}
        runs = {
            "hierarchical": partial(hierarchical_allreduce, x, comm, ranks_per_node=k, link=inter, check=False),
            "flat": partial(allreduce, x, comm, algorithm="ring", link=inter, check=False),
        }
        for name in runs:  # warm up: the split communicators, the plans, the scratch arenas
            runs[name]()
        for rep in range(args.reps):
            for name in sorted(runs, reverse=rep % 2 == 1):  # paired, order alternating
                comm.Barrier()
                start = time.perf_counter()
                runs[name]()
                measured[name].append(slowest(comm, time.perf_counter() - start))
        # Per hop: a message between nodes crosses a NIC up and a NIC down, inside a node two switch ports.
        topo = Hierarchical(p, k, Link(intra.latency / 2, intra.bandwidth), Link(inter.latency / 2, inter.bandwidth))
        model = CostModel(gamma=gamma)
        hier_spec = hierarchical(ALGORITHMS["ring"], layout)
        predicted = {
            "hierarchical": simulate(hier_spec, p, nbytes, model=model, topology=topo).time,
            "flat": simulate("ring", p, nbytes, model=CostModel(inter.latency, inter.per_byte, gamma)).time,
            "flat ring on the two-level machine": simulate("ring", p, nbytes, model=model, topology=topo).time,
        }
        ratios = [h / f for h, f in zip(measured["hierarchical"], measured["flat"])]
        rows.append(
            {
                "bytes": nbytes,
                "measured_median_s": {name: statistics.median(t) for name, t in measured.items()},
                "measured_s": measured,
                "predicted_s": predicted,
                "paired_ratio_hierarchical_over_flat": {"median": statistics.median(ratios), "all": ratios},
            }
        )

    if rank == 0:
        source = "given" if args.intra else "measured"
        print(
            f"{p} ranks, {layout.nodes} nodes of up to {k}; between nodes {inter.describe()} (emulated); "
            f"inside a node {source} {intra.describe()}; reduction {1 / gamma / 1e9:.2f} GB/s; load {load_before}"
        )
        print(f"{'bytes':>9} {'algorithm':>13} {'predicted':>10} {'measured':>10} {'meas/pred':>9}")
        for row in rows:
            for name in ("hierarchical", "flat"):
                pred, meas = row["predicted_s"][name], row["measured_median_s"][name]
                print(
                    f"{row['bytes']:>9} {name:>13} {format_time(pred):>10} {format_time(meas):>10} {meas / pred:>9.2f}"
                )
            ratio = row["paired_ratio_hierarchical_over_flat"]["median"]
            two_level = row["predicted_s"]["flat ring on the two-level machine"]
            print(
                f"{'':>9} hierarchical / flat, paired: {ratio:.2f}; the simulator's flat ring on the "
                f"two-level machine: {format_time(two_level)}"
            )
        if args.json:
            out = {
                "command": "mpiexec -n {} python {}".format(p, " ".join(sys.argv)),
                "ranks": p,
                "ranks_per_node": k,
                "inter_link": str(inter),
                "intra_link": {"latency_s": intra.latency, "bandwidth_Bps": intra.bandwidth, "source": source},
                "reduce_seconds_per_byte": gamma,
                "load_average_before": load_before,
                "load_average_after": load_average(),
                "rows": rows,
            }
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
