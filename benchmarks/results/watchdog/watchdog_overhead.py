"""Per-call time of collectives.allreduce (ring, float32, 2+ ranks) at 8 B, 64 KiB, 16 MiB, checks on (default) and off.

Run from any tree: `PYTHONPATH=TREE mpiexec -n 2 python watchdog_overhead.py`; alternate an old and a new tree
to see what the watchdog and the fingerprint check cost (results.txt beside this file)."""

import json
import statistics
import time

import numpy as np
from mpi4py import MPI

import collectives

comm = MPI.COMM_WORLD
out = {}
for nbytes, iters in ((8, 4000), (65536, 1000), (16 << 20, 20)):
    buf = np.zeros(nbytes // 4, np.float32)  # zeros stay zeros: no overflow to inf over thousands of sums
    for check in (None, False):
        for _ in range(5):
            collectives.allreduce(buf, comm, algorithm="ring", check=check)
        blocks = []
        for _ in range(7):
            comm.Barrier()
            t = time.perf_counter()
            for _ in range(iters):
                collectives.allreduce(buf, comm, algorithm="ring", check=check)
            blocks.append((time.perf_counter() - t) / iters)
        out[f"{nbytes}:{'on' if check is None else 'off'}"] = statistics.median(blocks) * 1e6
if comm.rank == 0:
    print(json.dumps(out))
