"""Run under mpiexec: a transport that naps on every wait (tests and sleeps) gives every algorithm's exact result.

Integer sums against numpy's, at sizes that take the one-message path and the segmented one
(isend/irecv plus ``wait``), with one rank arriving late so that the others' waits sleep; then a
communicator switched to polling waits (what DDP does) through ``allreduce`` with and without an
emulated link. Exits non-zero naming the first case that fails.
"""

import sys
import time

import numpy as np
from mpi4py import MPI

import collectives
from collectives.context import context
from collectives.mpi_transport import MPITransport
from collectives.ops import get_op

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()


def fail(msg):
    print(f"rank {rank}: FAIL {msg}", flush=True)
    comm.Abort(1)


def mine(n):
    return np.arange(n, dtype=np.int64) * (rank + 1) + rank


def expected(n):
    return np.arange(n, dtype=np.int64) * (size * (size + 1) // 2) + size * (size - 1) // 2


dup = comm.Dup()
t = MPITransport(dup, nap_bytes=0, nap_seconds=1e-4, spin=50e-6)
for name, spec in collectives.ALGORITHMS.items():
    for n in (1, 1000, 200_003):  # 200_003 int64: 1.6 MB, more than one ring segment per chunk
        if spec.constraints.violation(size, n):
            continue
        buf = mine(n)
        if rank == size - 1:
            time.sleep(0.05)  # the others wait for this rank: their waits sleep between tests
        t.run(spec.run(t, buf, get_op("sum")))
        if not np.array_equal(buf, expected(n)):
            fail(f"{name} n={n}: got {buf[:4]}..., expected {expected(n)[:4]}...")

for bad in ({"nap_seconds": 0}, {"spin": -1.0}, {"nap_bytes": -1}):
    try:
        MPITransport(dup, **bad)
        fail(f"MPITransport accepted {bad}")
    except ValueError as e:
        if "nap_seconds must be > 0, spin >= 0 and nap_bytes >= 0 or None" not in str(e):
            fail(f"unclear error for {bad}: {e}")
dup.Free()

# a communicator whose blocking collectives wait by polling, as DistributedDataParallel sets it up
from minidl.distributed import comm as process_group  # noqa: E402

user = comm.Dup()
process_group.poll_waits(user, 1e-4)
if context(user).transport.nap_bytes != 0:
    fail("poll_waits did not switch the communicator's transport")
for link in (None, "10Gbps,20us"):
    for n in (5, 70_001):
        buf = mine(n)
        collectives.allreduce(buf, user, "sum", "ring", link=link)
        if not np.array_equal(buf, expected(n)):
            fail(f"allreduce link={link} n={n} after poll_waits: got {buf[:4]}...")
user.Free()

comm.Barrier()
if rank == 0:
    print(f"{size} ranks: polling ok", flush=True)
sys.exit(0)
