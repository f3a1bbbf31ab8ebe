"""Run under mpiexec: every collective against an independent oracle (tests/oracle.py), in one launch.

Inputs are small integers (stored in every dtype), so the exact result is representable and
any reordering or chunk-index bug shows up as a wrong value, not as rounding noise; one case
uses random floats, where only the order of reduction decides the bits, to check that every
rank ends bitwise identical. Segmentation is exercised on small buffers by registering the
segmented algorithms again with tiny segments. Prints one line per failure and a summary;
exits non-zero if anything failed.
"""

import array
import functools
import operator
import sys
from functools import partial
from pathlib import Path

import numpy as np
from mpi4py import MPI

import collectives
from collectives.algorithms import AlgorithmSpec
from collectives.algorithms.double_tree import double_tree_allreduce, double_tree_cost
from collectives.algorithms.ring import ring_allreduce, ring_cost
from collectives.algorithms.tree import tree_pipelined_allreduce, tree_pipelined_cost
from collectives.mpi_transport import MPITransport
from collectives.ops import NUMERIC_DTYPES, get_op

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from oracle import expected_allreduce  # tests/oracle.py: independent of collectives.ops

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
args = [a for a in sys.argv[1:] if a != "--quick"]
QUICK = "--quick" in sys.argv  # fewer ops and dtypes, for large rank counts on a small machine
only = args[0].split(",") if args else None

# The segmented algorithms again, with segments of a few elements, so small tests cross many.
for name, run, cost in [
    ("ring", ring_allreduce, ring_cost),
    ("tree_pipelined", tree_pipelined_allreduce, tree_pipelined_cost),
    ("double_tree", double_tree_allreduce, double_tree_cost),
]:
    collectives.register(
        AlgorithmSpec(f"{name}_seg24", partial(run, segment_bytes=24), partial(cost, segment_bytes=24), "test")
    )
ALGOS = only or sorted(collectives.ALGORITHMS)
SIZES = [0, 1, size - 1, size, size + 1, 7, 100, 1001]
failures = 0


def fail(msg):
    global failures
    failures += 1
    print(f"rank {rank}: FAIL {msg}", flush=True)


def inputs(r, n, dtype, op, seed=0):
    rng = np.random.default_rng(1000 * r + n + seed)
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, n).astype(bool)
    hi = 2 if op == "prod" else 5
    lo = 0 if dtype.kind == "u" else -hi + 1
    vals = rng.integers(lo, hi, n)
    if dtype.kind == "c":
        return (vals + 1j * rng.integers(lo, hi, n)).astype(dtype)
    return vals.astype(dtype)


def identical_everywhere(buf):
    gathered = comm.allgather(buf.tobytes())
    return all(g == gathered[0] for g in gathered)


def check_allreduce(name, op, dtype, n, shape=None):
    buf = inputs(rank, n, dtype, op)
    expected = expected_allreduce(op, [inputs(r, n, dtype, op) for r in range(size)])
    if shape is not None:
        buf, expected = buf.reshape(shape), expected.reshape(shape)
    out = collectives.allreduce(buf, comm, op=op, algorithm=name)
    if out is not buf or not np.array_equal(buf, expected):
        fail(f"allreduce {name} {op} {np.dtype(dtype)} n={n}: got {buf.ravel()[:6]} expected {expected.ravel()[:6]}")


def dtypes_for(op):
    if QUICK:
        return [np.dtype(np.int32), np.dtype(np.float64)]
    out = [d for d in NUMERIC_DTYPES if not (op in ("max", "min") and d.kind == "c")]
    return out + [np.dtype(bool)] if op in ("max", "min") else out


# 1. every algorithm x op x dtype on a few sizes; every size on a few dtypes
for name in ALGOS:
    for op in ["sum", "max"] if QUICK else ["sum", "prod", "max", "min", "avg"]:
        for dtype in dtypes_for(op):
            for n in [size + 1, 100] if dtype.name not in ("int32", "float32") else SIZES:
                check_allreduce(name, op, dtype, n)
    # any shape, in place: 2-D C order and Fortran order
    check_allreduce(name, "sum", np.float64, 24, shape=(4, 6))
    f = np.asfortranarray(inputs(rank, 30, np.int64, "sum").reshape(5, 6))
    expected = expected_allreduce("sum", [inputs(r, 30, np.int64, "sum").reshape(5, 6) for r in range(size)])
    collectives.allreduce(f, comm, algorithm=name)
    if not np.array_equal(f, expected):
        fail(f"allreduce {name} on a Fortran-ordered array")
    # bitwise identical on every rank even where the order of reduction changes the bits
    rnd = np.random.default_rng(rank).standard_normal(1003).astype(np.float32)
    collectives.allreduce(rnd, comm, algorithm=name)
    if not identical_everywhere(rnd):
        fail(f"allreduce {name}: ranks hold different bits for random float32 inputs")

# 2. auto and the building blocks
check_allreduce("auto", "sum", np.float32, 1001)
for n in SIZES:
    b = collectives.chunk_bounds(n, size)
    for algo in ["ring"] + (["halving"] if size & (size - 1) == 0 else []):
        buf = inputs(rank, n, np.int64, "sum")
        mine = collectives.reduce_scatter(buf, comm, algorithm=algo)
        want = expected_allreduce("sum", [inputs(r, n, np.int64, "sum") for r in range(size)])[b[rank] : b[rank + 1]]
        if not np.array_equal(mine, want):
            fail(f"reduce_scatter {algo} n={n}: got {mine[:6]} expected {want[:6]}")
    for algo in ["ring"] + (["doubling"] if size & (size - 1) == 0 else []):
        full = np.arange(n, dtype=np.float64) * 3
        buf = np.full(n, -1.0)
        buf[b[rank] : b[rank + 1]] = full[b[rank] : b[rank + 1]]
        collectives.allgather(buf, comm, algorithm=algo)
        if not np.array_equal(buf, full):
            fail(f"allgather {algo} n={n}: got {buf[:6]}")
    for root in sorted({0, size - 1, size // 2}):
        for algo in ["binomial", "pipelined"]:
            buf = np.arange(n, dtype=np.int32) if rank == root else np.zeros(n, np.int32)
            collectives.broadcast(buf, root, comm, algorithm=algo)
            if not np.array_equal(buf, np.arange(n, dtype=np.int32)):
                fail(f"broadcast {algo} root={root} n={n}")
            mine = inputs(rank, n, np.int16, "sum")
            buf = mine.copy()
            collectives.reduce(buf, root, comm, algorithm=algo)
            want = expected_allreduce("sum", [inputs(r, n, np.int16, "sum") for r in range(size)])
            if rank == root and not np.array_equal(buf, want):
                fail(f"reduce {algo} root={root} n={n}: got {buf[:6]} expected {want[:6]}")
            if rank != root and not np.array_equal(buf, mine):
                fail(f"reduce {algo} root={root} n={n}: a non-root buffer changed")
# large enough for the default segment sizes to cut messages
big = inputs(rank, 300_001, np.float32, "sum")
collectives.allreduce(big, comm, algorithm="ring")
if not np.array_equal(big, expected_allreduce("sum", [inputs(r, 300_001, np.float32, "sum") for r in range(size)])):
    fail("ring with default segments on 300001 float32")

# 3. non-blocking: several outstanding at once, both progress modes
for progress in ["thread", "test"]:
    bufs = [inputs(rank, n, np.int32, "sum") for n in (0, 5, 1000, 40_000)]
    algos = ["ring", "recursive_doubling", "double_tree", "rabenseifner"]
    reqs = [collectives.iallreduce(b, comm, algorithm=a, progress=progress) for b, a in zip(bufs, algos)]
    while not all(r.test() for r in reqs):
        pass
    for b, n in zip(bufs, (0, 5, 1000, 40_000)):
        if not np.array_equal(b, expected_allreduce("sum", [inputs(r, n, np.int32, "sum") for r in range(size)])):
            fail(f"iallreduce progress={progress} n={n}")
    req = collectives.iallreduce(np.ones(10, np.float64), comm, op="avg", progress=progress)
    if not np.array_equal(req.wait(), np.ones(10)):
        fail(f"iallreduce avg progress={progress}")


# 4. mismatched calls raise on every rank (the check is on by default)
def expect_error(what, fn, exc=collectives.CollectiveMismatchError, text=""):
    try:
        fn()
    except exc as e:
        if text not in str(e):
            fail(f"{what}: message {e!r} does not mention {text!r}")
    except Exception as e:
        fail(f"{what}: raised {type(e).__name__}: {e}")
    else:
        fail(f"{what}: no error")


if size > 1:
    expect_error("length mismatch", lambda: collectives.allreduce(np.zeros(10 + rank)), text="element count")
    dt = np.float32 if rank == 0 else np.float64
    expect_error("dtype mismatch", lambda: collectives.allreduce(np.zeros(10, dt)), text="float32 and float64")
    expect_error("op mismatch", lambda: collectives.allreduce(np.zeros(4), op="sum" if rank else "max"), text="op")
    expect_error(
        "algorithm mismatch",
        lambda: collectives.allreduce(np.zeros(4), algorithm="ring" if rank else "tree"),
        text="algorithm",
    )
    expect_error(
        "iallreduce length mismatch", lambda: collectives.iallreduce(np.zeros(3 + rank)).wait(), text="element count"
    )
    # an invalid buffer on the last rank only: it gets its own error, the others a clear one
    last = size - 1
    bad = np.zeros((4, 4))[:, ::2] if rank == last else np.zeros(8)
    expect_error(
        "invalid buffer on one rank",
        lambda: collectives.allreduce(bad),
        ValueError if rank == last else collectives.CollectiveMismatchError,
        "contiguous" if rank == last else f"rank {last}",
    )
expect_error("bool sum", lambda: collectives.allreduce(np.zeros(3, bool)), TypeError, "not defined on bool")
expect_error("complex max", lambda: collectives.allreduce(np.zeros(3, complex), op="max"), TypeError, "complex")
expect_error("unknown algorithm", lambda: collectives.allreduce(np.zeros(3), algorithm="nope"), ValueError, "ring")
expect_error("unknown op", lambda: collectives.allreduce(np.zeros(3), op="xor"), ValueError, "expected one of")
expect_error("not an array", lambda: collectives.allreduce([1, 2]), TypeError, "numpy array")
collectives.register(
    AlgorithmSpec("pow2_only", ring_allreduce, ring_cost, "test", collectives.Constraints(power_of_two=True))
)
if size & (size - 1):
    expect_error("constraint", lambda: collectives.allreduce(np.zeros(3), algorithm="pow2_only"), ValueError, "power")
else:
    check_allreduce("pow2_only", "sum", np.int32, 10)
collectives.unregister("pow2_only")

# 5. the drop-in wrapper, with mpi4py's argument forms
w = collectives.wrap(comm)
if not isinstance(w, MPI.Intracomm) or w.Get_rank() != rank or w.Get_size() != size:
    fail("wrap: not an intracommunicator that answers like the original")
w.Barrier()
x = np.arange(12, dtype=np.int32) + rank
want = sum(np.arange(12, dtype=np.int32) + r for r in range(size))
out = np.empty(12, np.int32)
w.Allreduce(x, out, op=MPI.SUM)
if not np.array_equal(out, want):
    fail("wrap Allreduce out of place")
y = x.copy()
w.Allreduce(MPI.IN_PLACE, [y, MPI.INT], op=MPI.SUM)
if not np.array_equal(y, want):
    fail("wrap Allreduce IN_PLACE [buf, MPI.INT]")
y = x.copy()
w.Allreduce(y, y, op=MPI.MAX)
if not np.array_equal(y, np.arange(12, dtype=np.int32) + size - 1):
    fail("wrap Allreduce with sendbuf is recvbuf")
y = x.copy()
w.Allreduce(MPI.IN_PLACE, [y, 5, MPI.INT], op=MPI.SUM)
if not (np.array_equal(y[:5], want[:5]) and np.array_equal(y[5:], x[5:])):
    fail("wrap Allreduce [buf, count, datatype] touched more than count elements")
arr = array.array("d", [1.0 + rank, 2.0])
w.Allreduce(MPI.IN_PLACE, arr, op=MPI.MIN)
if list(arr) != [1.0, 2.0]:
    fail(f"wrap Allreduce on array.array: {list(arr)}")
for dt, mpi_dt in [(np.int8, MPI.SIGNED_CHAR), (np.uint64, MPI.UINT64_T), (np.complex64, MPI.C_FLOAT_COMPLEX)]:
    v = np.ones(3, dt)
    w.Allreduce(MPI.IN_PLACE, [v, mpi_dt], MPI.SUM)
    if not np.array_equal(v, np.full(3, size, dt)):
        fail(f"wrap Allreduce {mpi_dt.Get_name()}")
r_out = np.zeros(12, np.int32)
w.Reduce(x, r_out if rank == size - 1 else None, op=MPI.SUM, root=size - 1)
if rank == size - 1 and not np.array_equal(r_out, want):
    fail("wrap Reduce")
bc = np.arange(5.0) if rank == 0 else np.zeros(5)
w.Bcast([bc, MPI.DOUBLE], root=0)
if not np.array_equal(bc, np.arange(5.0)):
    fail("wrap Bcast")
ag = np.zeros(3 * size, np.int64)
w.Allgather(np.full(3, rank, np.int64), ag)
if not np.array_equal(ag, np.repeat(np.arange(size), 3)):
    fail("wrap Allgather")
ag2 = np.zeros(2 * size, np.int64)
ag2[2 * rank : 2 * rank + 2] = rank
w.Allgather(MPI.IN_PLACE, ag2)
if not np.array_equal(ag2, np.repeat(np.arange(size), 2)):
    fail("wrap Allgather IN_PLACE")
send = np.arange(4 * size, dtype=np.float64) + rank
rs = np.zeros(4)
w.Reduce_scatter_block(send, rs, op=MPI.SUM)
full = sum(np.arange(4 * size, dtype=np.float64) + r for r in range(size))
if not np.array_equal(rs, full[4 * rank : 4 * rank + 4]) or not np.array_equal(send, np.arange(4 * size) + rank):
    fail("wrap Reduce_scatter_block")
inplace = np.arange(4 * size, dtype=np.float64) + rank
w.Reduce_scatter_block(MPI.IN_PLACE, inplace, op=MPI.SUM)
if not np.array_equal(inplace[:4], full[4 * rank : 4 * rank + 4]):
    fail("wrap Reduce_scatter_block IN_PLACE")
# MPI.BAND runs by hand now; what the wrapper leaves to MPI is tested in mpi_wrap_comm_check.py
bits = np.array([0b1111 ^ (1 << (r % 4)) for r in range(size)], np.int32)
band = bits[rank : rank + 1].copy()
w.Allreduce(MPI.IN_PLACE, band, op=MPI.BAND)
if band[0] != functools.reduce(operator.and_, [int(b) for b in bits]):
    fail(f"wrap Allreduce BAND gave {band[0]}")
if w.allreduce(rank) != size * (size - 1) // 2:  # the pickle-based lowercase call is mpi4py's own
    fail("wrap delegated allreduce")


# 6. the closed-form message and byte counts match what the algorithms send on the busiest rank
class CountingTransport(MPITransport):
    def __init__(self, c):
        super().__init__(c)
        self.messages = self.bytes = 0

    def isend(self, buf, dest, tag):
        self.messages, self.bytes = self.messages + 1, self.bytes + buf.nbytes
        return super().isend(buf, dest, tag)

    def send(self, buf, dest, tag):
        self.messages, self.bytes = self.messages + 1, self.bytes + buf.nbytes
        return super().send(buf, dest, tag)

    def sendrecv(self, sendbuf, dest, recvbuf, source, tag):
        self.messages, self.bytes = self.messages + 1, self.bytes + sendbuf.nbytes
        return super().sendrecv(sendbuf, dest, recvbuf, source, tag)


dup = comm.Dup()
for name in ALGOS:
    spec = collectives.ALGORITHMS[name]
    for dtype in (np.uint8, np.float32) if QUICK else (np.uint8, np.float32, np.complex128):
        for n in [s for s in SIZES if s <= 100] if name.endswith("_seg24") else [*SIZES, 2 * size * 1000 + 3]:
            t = CountingTransport(dup)
            t.run(spec.run(t, np.ones(n, dtype), get_op("sum")))
            got = tuple(dup.allreduce(x, op=MPI.MAX) for x in (t.messages, t.bytes))
            c = spec.cost(size, n * np.dtype(dtype).itemsize, np.dtype(dtype).itemsize)
            if got != (c.messages_per_rank, c.bytes_sent_per_rank):
                said = (c.messages_per_rank, c.bytes_sent_per_rank)
                fail(f"cost {name} {np.dtype(dtype)} n={n}: the busiest rank sent {got}, the cost says {said}")
dup.Free()


# 7. the hot path: repeated calls run from a cached plan (collectives.plans); it must give the
# same answers and the same errors as the full path, and forget plans when the registry changes
def repeated(name, op, dtype, shape, order="C", times=3):
    for i in range(times):
        mine = np.asarray(inputs(rank, int(np.prod(shape)), dtype, op, seed=i).reshape(shape), order=order)
        want = expected_allreduce(op, [inputs(r, mine.size, dtype, op, seed=i) for r in range(size)]).reshape(shape)
        collectives.allreduce(mine, comm, op, name)
        if not np.array_equal(mine, want):
            fail(f"hot path {name} {op} {np.dtype(dtype)} {shape} order={order} call {i}: got {mine.ravel()[:6]}")


for name in ["recursive_doubling", "ring", "double_tree", "auto"]:
    repeated(name, "sum", np.int32, (7,))
    repeated(name, "avg", np.float64, (3, 4), order="F")
    repeated(name, "max", np.int16, (2, 3, 2))
plan_key = ("recursive_doubling", "sum", np.dtype(np.float64), 12)
collectives.allreduce(np.zeros(12), comm, "sum", "recursive_doubling")
collectives.allreduce(np.zeros(12), comm, "sum", "recursive_doubling")
if plan_key not in collectives.api.context(comm).plans:
    fail("hot path: a repeated call left no plan")
# buffers of a cached key that the plan does not cover still get their own errors
ro = np.zeros(12)
ro.flags.writeable = False
expect_error("hot path read-only", lambda: collectives.allreduce(ro, comm, "sum", "recursive_doubling", check=False),
             ValueError, "read-only")  # fmt: skip
strided = np.zeros(24)[::2]
expect_error("hot path non-contiguous", lambda: collectives.allreduce(strided, comm, "sum", "recursive_doubling",
             check=False), ValueError, "contiguous")  # fmt: skip
if size > 1:  # one rank on its cached plan, the other on a different call: both raise
    expect_error(
        "hot path op mismatch",
        lambda: collectives.allreduce(np.zeros(12), comm, "sum" if rank else "max", "recursive_doubling"),
        text="op",
    )
    expect_error(
        "hot path length mismatch",
        lambda: collectives.allreduce(np.zeros(12 if rank else 13), comm, "sum", "recursive_doubling"),
        text="element count",
    )
# the registry changes: a re-registered name runs its new code
collectives.register(AlgorithmSpec("zz_swap", ring_allreduce, ring_cost, "test"))
x = np.ones(5, np.int64)
collectives.allreduce(x, comm, "sum", "zz_swap")
collectives.allreduce(x, comm, "sum", "zz_swap")
collectives.unregister("zz_swap")


def doubled(t, buf, op):  # a deliberately different algorithm: reduce, then double the result
    yield from ring_allreduce(t, buf, op)
    t.reduce(op, buf, buf.copy())


collectives.register(AlgorithmSpec("zz_swap", doubled, ring_cost, "test"))
x = np.ones(5, np.int64)
collectives.allreduce(x, comm, "sum", "zz_swap")
if not np.array_equal(x, np.full(5, 2 * size)):
    fail(f"hot path: a re-registered algorithm ran its old code ({x})")
collectives.unregister("zz_swap")
expect_error("hot path unregistered", lambda: collectives.allreduce(x, comm, "sum", "zz_swap"), ValueError, "ring")

total = comm.allreduce(failures)
if rank == 0:
    print(f"{size} ranks: {total} failures")
sys.exit(1 if total else 0)
