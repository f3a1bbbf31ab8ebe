"""Under mpiexec: large allreduces waited for by napping (collectives.mpi_transport) give numpy's answer.

Every algorithm runs on buffers above NAP_BYTES with the transport's napping wait forced on and
off, on exact-valued inputs (small integers, exact in float64 in any order), compared with the
sum computed here directly. Also the wait-mode choice itself: COLLECTIVES_WAIT's values, a bad
value's error, and "auto" following the launcher's count of ranks on the node. Prints
"P ranks: N failures".
"""

import math
import os

import numpy as np
from mpi4py import MPI

import collectives
from collectives.api import context
from collectives.mpi_transport import NAP_BYTES, naps

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
failures = 0


def fail(what: str) -> None:
    global failures
    failures += 1
    print(f"rank {rank}: FAIL {what}", flush=True)


# the choice of wait
if naps(size, "mpi") or not naps(size, "nap"):
    fail("COLLECTIVES_WAIT=mpi/nap not obeyed")
try:
    naps(size, "spin")
    fail("COLLECTIVES_WAIT=spin accepted")
except ValueError as e:
    if "COLLECTIVES_WAIT" not in str(e) or "'spin'" not in str(e):
        fail(f"unclear error for a bad COLLECTIVES_WAIT: {e}")
saved = os.environ.get("MPI_LOCALNRANKS")
os.environ["MPI_LOCALNRANKS"] = str((os.cpu_count() or 1) + 1)
if not naps(size, "auto"):
    fail("auto: more ranks than cores on the node should nap")
os.environ["MPI_LOCALNRANKS"] = "1"
if naps(size, "auto"):
    fail("auto: one rank on the node should not nap")
if saved is None:
    del os.environ["MPI_LOCALNRANKS"]
else:
    os.environ["MPI_LOCALNRANKS"] = saved

# large allreduces, napping and not
t = context(None).transport
n = 3 * NAP_BYTES // 8 + 7  # several chunks above NAP_BYTES, not a multiple of any rank count
expected = sum((np.arange(n) % 97 + r) for r in range(size)).astype(np.float64)
for napping in (True, False):
    t.nap_bytes = NAP_BYTES if napping else math.inf
    for name in collectives.ALGORITHMS:
        buf = (np.arange(n) % 97 + rank).astype(np.float64)
        collectives.allreduce(buf, algorithm=name)
        if not np.array_equal(buf, expected):
            fail(f"{name} with naps={napping}: {int((buf != expected).sum())} elements differ")
total = comm.allreduce(failures)
if rank == 0:
    print(f"{size} ranks: {total} failures", flush=True)
