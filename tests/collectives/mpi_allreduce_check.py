"""Run under mpiexec: every registered algorithm against a numpy reference.

Inputs are small integers (stored in every dtype), so the exact result is representable and
any reordering or chunk-index bug shows up as a wrong value, not as rounding noise.
Exits non-zero on the first mismatch, naming the case.
"""

import sys

import numpy as np
from mpi4py import MPI

import collectives
from collectives.ops import get_op

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
algorithms = sys.argv[1].split(",") if len(sys.argv) > 1 else sorted(collectives.ALGORITHMS)
SIZES = [0, 1, size - 1, size, size + 1, 7, 100, 1000, 4099]
DTYPES = [np.int32, np.int64, np.float32, np.float64, np.uint8, np.float16, np.complex128]


def inputs(r, n, dtype, op):
    rng = np.random.default_rng(1000 * r + n)
    hi = 2 if op == "prod" else 5
    vals = rng.integers(0, hi, n) if np.dtype(dtype).kind == "u" else rng.integers(-hi + 1, hi, n)
    return vals.astype(dtype)


failures = 0
for name in algorithms:
    for op in ["sum", "prod", "max", "min"]:
        for dtype in DTYPES:
            if np.dtype(dtype).kind == "c" and op in ("max", "min"):
                continue
            for n in SIZES:
                if n < 0:
                    continue
                buf = inputs(rank, n, dtype, op)
                expected = get_op(op).reference([inputs(r, n, dtype, op) for r in range(size)])
                out = collectives.allreduce(buf, comm, op=op, algorithm=name)
                if out is not buf or not np.array_equal(buf, expected):
                    failures += 1
                    print(f"rank {rank}: {name} {op} {np.dtype(dtype)} n={n}: got {buf[:8]} expected {expected[:8]}")
                # every rank must hold bitwise identical results
                gathered = comm.allgather(buf.tobytes())
                if any(g != gathered[0] for g in gathered):
                    failures += 1
                    print(f"rank {rank}: {name} {op} {np.dtype(dtype)} n={n}: ranks disagree")

total = comm.allreduce(failures)
if rank == 0:
    print(f"{size} ranks: {total} failures")
sys.exit(1 if total else 0)
