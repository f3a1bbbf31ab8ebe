"""Under mpiexec: the mismatch check of blocking calls, with small allreduces carried inside it.

    python mpi_fused_check.py            the results and the mismatch cases; prints "P ranks: N failures"
    python mpi_fused_check.py missing    rank 1 never arrives at a fused allreduce; the others time out

Results are checked against numpy on exact-valued inputs (small integers, exact in every dtype
and order), and float results bit for bit against the same algorithm run unchecked (the
generator in collectives/algorithms). Every mismatch case is run with each rank in turn as the
odd one out, on the full path (a first call) and on the hot path (a cached plan), and must raise
CollectiveMismatchError naming the field on every rank, leave every buffer as it was, and leave
the next call working.
"""

import sys
import time

import numpy as np
from mpi4py import MPI

import collectives
from collectives.agreement import FUSE_BYTES

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
failures = 0


def fail(what: str) -> None:
    global failures
    failures += 1
    print(f"rank {rank}: FAIL {what}", flush=True)


if len(sys.argv) > 1 and sys.argv[1] == "missing":
    collectives.allreduce(np.ones(4), comm, algorithm="auto")  # every rank is up
    if rank == 1:
        time.sleep(120)  # the job must end long before this
    collectives.allreduce(np.ones(4), comm, algorithm="auto", timeout=2)
    print(f"rank {rank} finished the second allreduce", flush=True)
    sys.exit(0)


def inputs(r: int, n: int, dtype, op: str) -> np.ndarray:
    """Rank r's exact-valued input: small integers (1 and 2 under prod, so products stay small)."""
    values = (np.arange(n) * 7 + r * 3) % (3 if op == "prod" else 11) - (0 if op == "prod" else 5)
    if op == "prod":
        values = values % 2 + 1
    if np.dtype(dtype).kind == "u":
        values = np.abs(values)
    return values.astype(dtype)


REFERENCE = {"sum": np.add, "prod": np.multiply, "max": np.maximum, "min": np.minimum}


def expected(n: int, dtype, op: str) -> np.ndarray:
    stacked = np.stack([inputs(r, n, dtype, op) for r in range(size)])
    if op == "avg":
        return (stacked.astype(np.float64).sum(axis=0) / size).astype(dtype)
    return REFERENCE[op].reduce(stacked, axis=0).astype(dtype)


def same_everywhere(x: np.ndarray) -> bool:
    return all(np.array_equal(x.view(np.uint8), other.view(np.uint8)) for other in comm.allgather(x))


# 1. results: the fused path (sizes up to FUSE_BYTES) and just above it, full path then hot path
for dtype in (np.int8, np.uint16, np.int32, np.int64, np.float32, np.float64, np.complex128):
    itemsize = np.dtype(dtype).itemsize
    for op in ("sum", "prod", "max", "min", "avg"):
        if (op in ("max", "min") and np.dtype(dtype).kind == "c") or (op == "avg" and np.dtype(dtype).kind != "f"):
            continue
        for n in (0, 1, 5, FUSE_BYTES // itemsize, FUSE_BYTES // itemsize + 1):
            for algorithm in ("auto", "recursive_doubling"):
                want = expected(n, dtype, op)
                for call in ("first", "repeated"):
                    x = inputs(rank, n, dtype, op)
                    collectives.allreduce(x, comm, op, algorithm)
                    if not np.array_equal(x, want) or not same_everywhere(x):
                        fail(f"{algorithm} {op} {np.dtype(dtype)} n={n} {call} call: {x[:4]} != {want[:4]}")

# the same bits as recursive doubling run unchecked (the algorithm's generator), on random floats
rng = np.random.default_rng(rank)
for n in (1, 3, 100, FUSE_BYTES // 8):
    data = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n)
    for op in ("sum", "prod", "avg"):
        checked, unchecked = data.copy(), data.copy()
        collectives.allreduce(checked, comm, op, "recursive_doubling")
        collectives.allreduce(unchecked, comm, op, "recursive_doubling", check=False)
        if not np.array_equal(checked.view(np.uint8), unchecked.view(np.uint8)) or not same_everywhere(checked):
            fail(f"fused {op} n={n}: not the bits of recursive doubling run unchecked")

# a buffer that is not exactly a numpy array always takes the full path; the other ranks' plans agree with it
x = inputs(rank, 6, np.int32, "sum")
for _ in range(2):
    y = (x.view(np.matrix) if rank == size - 1 else x).copy()
    collectives.allreduce(y, comm, "sum", "auto")
    if not np.array_equal(np.asarray(y).ravel(), expected(6, np.int32, "sum")):
        fail(f"a numpy subclass on rank {size - 1}: {y}")


# 2. mismatches: each rank in turn calls differently
def call(kwargs: dict) -> np.ndarray:
    buf = kwargs["buf"].copy()
    collectives.allreduce(buf, comm, **{k: v for k, v in kwargs.items() if k != "buf"})
    return buf


def mismatch(what: str, mine: dict, odd: dict, text: str) -> None:
    """Every rank but one calls allreduce(**mine), that one allreduce(**odd): all must raise."""
    for odd_rank in range(size):
        for path in ("full", "hot"):
            if path == "hot":  # every rank makes both calls together first, so both are cached plans
                call(mine)
                call(odd)
            kwargs = odd if rank == odd_rank else mine
            buf = kwargs["buf"].copy()
            before = buf.copy()
            where = f"{what} (rank {odd_rank} differs, {path} path)"
            try:
                collectives.allreduce(buf, comm, **{k: v for k, v in kwargs.items() if k != "buf"})
            except collectives.CollectiveMismatchError as e:
                if text not in str(e):
                    fail(f"{where}: {e} does not mention {text!r}")
            except Exception as e:
                fail(f"{where}: {type(e).__name__}: {e}")
            else:
                fail(f"{where}: no error")
            if not np.array_equal(buf.view(np.uint8), before.view(np.uint8)):
                fail(f"{where}: the buffer changed")
            after = call({"buf": np.full(3, rank + 1.0), "algorithm": "auto"})
            if not np.array_equal(after, np.full(3, size * (size + 1) / 2)):
                fail(f"{where}: the next call gave {after}")
        collectives.api.context(comm).plans.clear()  # the next odd rank's full path starts from no plan


small = np.arange(5, dtype=np.float64) + rank
RD = "recursive_doubling"
CASES = [
    ("count", {"buf": small, "algorithm": RD}, {"buf": np.arange(6.0), "algorithm": RD}, "element count"),
    ("dtype", {"buf": small, "algorithm": RD}, {"buf": small.astype(np.float32), "algorithm": RD}, "dtype"),
    ("op", {"buf": small, "algorithm": RD}, {"buf": small, "op": "max", "algorithm": RD}, "op"),
    ("algorithm", {"buf": small, "algorithm": "auto"}, {"buf": small, "algorithm": "ring"}, "algorithm"),
    (
        "fused or not: the size",
        {"buf": small, "algorithm": "auto"},
        {"buf": np.zeros(FUSE_BYTES // 8 + 1), "algorithm": "auto"},
        "element count",
    ),
    (
        "fused or not: a link",
        {"buf": small, "algorithm": "auto"},
        {"buf": small, "algorithm": "auto", "link": "100Gbps,1us"},
        "algorithm",
    ),
]
for what, mine, odd, text in CASES:
    mismatch(what, mine, odd, text)

# another collective on one rank while the others' allreduce is fused
for odd_rank in range(size):
    buf = np.arange(4.0)
    try:
        if rank == odd_rank:
            collectives.broadcast(buf, 0, comm)
        else:
            collectives.allreduce(buf, comm, "sum", "auto")
    except collectives.CollectiveMismatchError as e:
        if "disagree on the collective" not in str(e):
            fail(f"broadcast on rank {odd_rank}: {e}")
    else:
        fail(f"broadcast on rank {odd_rank}, allreduce elsewhere: no error")

# an invalid buffer on one rank while the others' calls are fused: its own error there, a clear one elsewhere
for odd_rank in range(size):
    bad = np.zeros((4, 4))[:, ::2] if rank == odd_rank else np.zeros(8)
    try:
        collectives.allreduce(bad, comm, "sum", "auto")
    except ValueError as e:
        if rank != odd_rank or "contiguous" not in str(e):
            fail(f"invalid buffer on rank {odd_rank}: ValueError {e}")
    except collectives.CollectiveMismatchError as e:
        if rank == odd_rank or f"rank {odd_rank} was called with invalid arguments" not in str(e):
            fail(f"invalid buffer on rank {odd_rank}: {e}")
    else:
        fail(f"invalid buffer on rank {odd_rank}: no error")

total = comm.allreduce(failures)
if rank == 0:
    print(f"{size} ranks: {total} failures")
sys.exit(1 if total else 0)
