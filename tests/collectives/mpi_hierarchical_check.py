"""Run under mpiexec: the hierarchical allreduce over Split communicators gives numpy's result for every
grouping, inner algorithm, op and dtype; the emulated link slows the leaders' messages only; bad or
disagreeing ``ranks_per_node`` raise on every rank. Exits non-zero naming the first failure."""

import time

import numpy as np
from mpi4py import MPI

import collectives
from collectives.context import context
from collectives.emulation import EmulatedLinkTransport
from collectives.hierarchical import hierarchical_allreduce, node_groups

comm = MPI.COMM_WORLD
rank, p = comm.Get_rank(), comm.Get_size()


def fail(msg):
    print(f"rank {rank}: FAIL {msg}", flush=True)
    comm.Abort(1)


rng = np.random.default_rng(0)  # the same on every rank: each rank can compute the expected result
for ranks_per_node in (1, 2, 3, p + 2, None):  # None: the host (one node on this machine)
    for algorithm in ("ring", "tree", "rabenseifner", "double_tree", "auto"):
        for op, dtype in (("sum", np.int64), ("avg", np.float64), ("max", np.float32), ("sum", np.float32)):
            for n in (0, 1, 13, 1000):
                inputs = rng.integers(-50, 50, (p, n)).astype(dtype)  # small integers: exact in any order
                buf = inputs[rank].copy()
                out = hierarchical_allreduce(buf, comm, op, algorithm, ranks_per_node=ranks_per_node)
                if op == "max":
                    expected = inputs.max(axis=0)
                else:
                    expected = inputs.sum(axis=0, dtype=dtype) / (p if op == "avg" else 1)
                if out is not buf or not np.array_equal(buf, expected.astype(dtype)):
                    case = f"ranks_per_node={ranks_per_node} {algorithm} {op} {np.dtype(dtype)} n={n}"
                    fail(f"{case}: {buf} != {expected}")

# The link applies between nodes: the leaders' transport is emulated, the node's is not.
groups = node_groups(context(comm), 2)
leaders = groups.leaders(collectives.parse_link("1Gbps,3ms"))
if (leaders is not None) != (rank % 2 == 0) or (leaders is not None and not isinstance(leaders, EmulatedLinkTransport)):
    fail(f"rank {rank}: leaders' transport {leaders!r}")
if isinstance(groups.node, EmulatedLinkTransport):
    fail("the node transport is emulated")
if p > 2:  # at least two nodes: the leaders' ring has 2 (nodes - 1) steps of at least the link's latency
    nodes = -(-p // 2)
    buf = np.ones(8)
    comm.Barrier()
    start = time.perf_counter()
    hierarchical_allreduce(buf, comm, ranks_per_node=2, link="1Gbps,3ms")
    elapsed = time.perf_counter() - start
    if not np.array_equal(buf, np.full(8, float(p))):
        fail(f"over the emulated link: {buf}")
    least = 2 * (nodes - 1) * 3e-3
    if rank == 0 and elapsed < least:
        fail(f"the emulated allreduce took {elapsed:.4f} s, the leaders' link needs at least {least:.4f} s")

# Mistakes raise on every rank, naming the value.
for bad in (0, "two"):
    try:
        hierarchical_allreduce(np.ones(3), comm, ranks_per_node=bad if rank == 0 else 2)
    except (ValueError, collectives.CollectiveMismatchError) as e:  # rank 0's error; the others learn of it
        if rank == 0 and "ranks_per_node must be a positive integer" not in str(e):
            fail(f"the message does not name ranks_per_node: {e}")
    else:
        fail(f"ranks_per_node={bad!r} on rank 0 did not raise")
if p > 1:
    try:
        hierarchical_allreduce(np.ones(3), comm, ranks_per_node=1 if rank == 0 else 3)
    except ValueError as e:
        if "different ranks_per_node" not in str(e):
            fail(f"the message does not say ranks_per_node differs: {e}")
    else:
        fail("different ranks_per_node on different ranks did not raise")
comm.Barrier()
if rank == 0:
    print(f"{p} ranks: hierarchical allreduce ok", flush=True)
