"""Under mpiexec: one rank fails in a given way; the job must end promptly, saying what happened.

    python mpi_failure_check.py MODE      (run by test_failures.py with mpiexec -n 2 or 3)

raise    rank 1 raises between collectives (collectives.abort_on_error installed)
exit     rank 1 calls sys.exit(3) between collectives
missing  rank 1 never calls the allreduce; the others wait with timeout=2 s
nohook   as missing, without abort_on_error: the timeout alone must end the job
imissing as missing, the others waiting in iallreduce(timeout=2).wait()
wrap     rank 1 passes mismatched send and receive buffers to the wrapper's Allreduce
args     rank 1 passes a bad timeout, then a bad link (the hot path's key is cached by then)
"""

import sys
import time

import numpy as np
from mpi4py import MPI

import collectives

mode = sys.argv[1]
comm = MPI.COMM_WORLD
rank = comm.Get_rank()
if mode != "nohook":
    collectives.abort_on_error()

x = np.ones(4)
collectives.allreduce(x, comm)  # every rank is up and has made one collective
if mode == "raise" and rank == 1:
    raise ValueError("rank 1 broke between collectives")
if mode == "exit" and rank == 1:
    sys.exit(3)
if mode in ("missing", "nohook", "imissing") and rank == 1:
    time.sleep(120)  # the job must end long before this
if mode == "wrap":
    wrapped = collectives.wrap(comm)
    recv = np.zeros(4)
    send = np.ones(5 if rank == 1 else 4)  # rank 1's send buffer does not match its receive buffer
    try:
        wrapped.Allreduce(send, recv)
    except (ValueError, collectives.CollectiveMismatchError) as e:
        print(f"rank {rank} raised {type(e).__name__}: {e}", flush=True)
    sys.exit(0)
if mode == "args":
    for name, bad in (("timeout", {"timeout": -1}), ("link", {"link": "10Gbps"})):
        try:
            collectives.allreduce(x, comm, **(bad if rank == 1 else {}))
        except (ValueError, collectives.CollectiveMismatchError) as e:
            print(f"rank {rank} raised {type(e).__name__} for the bad {name}: {e}", flush=True)
    sys.exit(0)
if mode == "imissing":
    collectives.iallreduce(x, comm, timeout=2).wait()
else:
    collectives.allreduce(x, comm, timeout=2)
print(f"rank {rank} finished the second allreduce", flush=True)
