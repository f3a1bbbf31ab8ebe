"""How a blocking allreduce waits for large exchanges when ranks share cores: napping or MPI's own wait.

    mpiexec -n 4 python benchmarks/wait_bench.py [--size 16M] [--rounds 9] [--algorithms rabenseifner,ring]
        [--json benchmarks/results/busbw16m/wait-1.json]

Within one launch (placement and load differ between launches, so comparisons across launches
mislead), every round times MPI's ``Allreduce`` and ``collectives.allreduce`` for each algorithm
with the transport's napping wait on and off (``MPITransport.naps``, collectives/mpi_transport.py),
the library's default mismatch check on, in an order that rotates from round to round. A timing
is the slowest rank's time of one call after a barrier; the summary is the median over rounds of
MPI's time / ours in the same round (> 1: faster than MPI). The JSON keeps every time, the load
before and after, the machine and the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

import collectives
from collectives.api import context
from collectives.bench.runinfo import load_average, run_info
from collectives.sim.units import parse_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="16M", help="bytes per rank (default 16M), float32")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    parser.add_argument("--algorithms", default="rabenseifner,ring", help="comma separated (default rabenseifner,ring)")
    parser.add_argument("--json", help="write every time, the load and the command")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    n = parse_size(args.size) // 4
    ones = np.ones(n, np.float32)
    buf = ones.copy()
    t = context(comm).transport
    kinds = [("MPI", None)] + [(a, nap) for a in args.algorithms.split(",") for nap in (True, False)]

    def once(name: str, nap: bool | None) -> float:
        np.copyto(buf, ones)  # repeated sums of the result would overflow float32 (and warn)
        comm.Barrier()
        start = time.perf_counter()
        if name == "MPI":
            comm.Allreduce(MPI.IN_PLACE, buf, MPI.SUM)
        else:
            t.naps = nap
            collectives.allreduce(buf, comm, algorithm=name)
        return comm.allreduce(time.perf_counter() - start, op=MPI.MAX)

    info = run_info(MPI.Get_library_version().splitlines()[0]) if comm.Get_rank() == 0 else {}
    for kind in kinds:  # warm-up: connections, plans, scratch
        once(*kind)
        once(*kind)
    times: dict[str, list[float]] = {label(*k): [] for k in kinds}
    for r in range(args.rounds):  # the order rotates from round to round: no contender always goes first
        for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
            times[label(*kind)].append(once(*kind))
    if comm.Get_rank() != 0:
        return
    mpi = np.array(times["MPI"])
    summary = {k: float(np.median(mpi / np.array(v))) for k, v in times.items() if k != "MPI"}
    print(f"# {comm.Get_size()} ranks, {args.size} float32, {args.rounds} rounds; load {load_average()}")
    for k, v in times.items():
        ratio = f"  MPI/this {summary[k]:.2f}" if k in summary else ""
        print(f"{k:28s} median {np.median(v) * 1e3:8.2f} ms{ratio}")
    if args.json:
        record = {
            **info,
            "command": " ".join(["python", *sys.argv]),
            "load_after": load_average(),
            "ranks": comm.Get_size(),
            "bytes": n * 4,
            "times_s": times,
            "mpi_over_ours_median": summary,
        }
        Path(args.json).write_text(json.dumps(record, indent=1))


def label(name: str, nap: bool | None) -> str:
    return name if nap is None else f"{name} {'nap' if nap else 'mpi-wait'}"


if __name__ == "__main__":
    main()
