"""Per-call time of a small allreduce, tight loops interleaved with MPI's own: checks on, checks off, MPI.

    PYTHONPATH=TREE mpiexec -n P python benchmarks/results/fingerprint/percall.py OUT.json

For 8 B and 4 KiB of float32, ``algorithm="auto"`` and ``op="sum"`` (a string, as users pass it): blocks
of calls, the contenders in turn block by block, so they share whatever the machine is doing; the
JSON keeps every block's us per call, the load before and after, and the tree's commit. The
"best" (minimum over blocks) is the nearest a loaded machine comes to a quiet one.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from functools import partial

import numpy as np
from mpi4py import MPI

import collectives

comm = MPI.COMM_WORLD
BLOCKS, CALLS = 15, 500


def commit() -> str:
    tree = os.path.dirname(os.path.dirname(os.path.abspath(collectives.__file__)))
    out = subprocess.run(["git", "-C", tree, "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or tree


result = {"ranks": comm.Get_size(), "load_before": os.getloadavg(), "tree": commit(), "us_per_call": {}}
for nbytes in (8, 4096):
    buf = np.zeros(nbytes // 4, np.float32)  # zeros stay zeros over thousands of sums
    out = np.empty_like(buf)
    contenders = {
        "MPI": partial(comm.Allreduce, buf, out, MPI.SUM),
        "checks on": partial(collectives.allreduce, buf, comm, "sum", "auto"),
        "checks off": partial(collectives.allreduce, buf, comm, "sum", "auto", check=False),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for call in contenders.values():
        for _ in range(20):
            call()
    for _ in range(BLOCKS):
        for name, call in contenders.items():
            comm.Barrier()
            start = time.perf_counter()
            for _ in range(CALLS):
                call()
            times[name].append((time.perf_counter() - start) / CALLS * 1e6)
    result["us_per_call"][nbytes] = times
result["load_after"] = os.getloadavg()
if comm.Get_rank() == 0:
    with open(sys.argv[1], "w") as f:
        json.dump(result, f, indent=1)
    for nbytes, times in result["us_per_call"].items():
        mpi_med, mpi_min = statistics.median(times["MPI"]), min(times["MPI"])
        line = "  ".join(
            f"{name} {statistics.median(t):.2f} (best {min(t):.2f}, MPI/this {mpi_med / statistics.median(t):.2f},"
            f" best {mpi_min / min(t):.2f})"
            for name, t in times.items()
        )
        print(f"p={comm.Get_size()} {nbytes} B: {line}")
    print(f"load {result['load_before']} -> {result['load_after']}")
