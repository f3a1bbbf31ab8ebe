"""Run under mpiexec: DistributedDataParallel on ``collectives.wrap(MPI.COMM_WORLD)`` trains as on the world.

DDP duplicates the communicator it is given; a wrapped one used to crash there. Two steps of SGD
on a wrapped communicator must give bitwise the parameters that the plain world gives (the same
algorithm adds the same numbers in the same order), with and without overlap. Exits non-zero
with a message naming what differs.
"""

import numpy as np
from mpi4py import MPI

import collectives
import minidl
import minidl.functional as F
from collectives.mpi_wrap import WrappedComm
from minidl import nn, optim
from minidl.distributed import DistributedDataParallel

world = MPI.COMM_WORLD
rank, size = world.Get_rank(), world.Get_size()
rng = np.random.default_rng(7)
STEPS, B = 2, 3
X = rng.standard_normal((STEPS, size * B, 6))
Y = rng.integers(0, 3, (STEPS, size * B))


def fail(msg: str) -> None:
    print(f"rank {rank}: FAIL {msg}", flush=True)
    world.Abort(1)


def train(comm, overlap: bool) -> list[np.ndarray]:
    minidl.manual_seed(rank + 1)  # different init per rank: DDP broadcasts rank 0's
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    ddp = DistributedDataParallel(model, comm, bucket_cap_mb=1e-4, first_bucket_mb=1e-4, overlap=overlap)
    if isinstance(comm, WrappedComm) and not isinstance(ddp.comm, WrappedComm):
        fail(f"DDP's duplicate of the wrapped communicator is a {type(ddp.comm).__name__}")
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for s in range(STEPS):
        x, y = X[s, rank * B : (rank + 1) * B], Y[s, rank * B : (rank + 1) * B]
        loss = F.cross_entropy(ddp(minidl.tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ddp.close()
    return [p.data.copy() for p in model.parameters()]


for overlap in (True, False):
    plain = train(world, overlap)
    wrapped = train(collectives.wrap(world, "tree", check=True, timeout=60.0), overlap)
    for i, (a, b) in enumerate(zip(plain, wrapped)):
        if not np.array_equal(a, b):
            fail(f"overlap={overlap}: parameter {i} differs by {np.abs(a - b).max()} on the wrapped communicator")
    if size > 1:  # the ranks started from different weights: equal results show DDP synchronised them
        got = world.allgather(np.concatenate([p.ravel() for p in wrapped]))
        if not all(np.array_equal(g, got[0]) for g in got):
            fail("ranks hold different parameters after training on the wrapped communicator")

world.Barrier()
if rank == 0:
    print(f"{size} ranks: DDP on a wrapped communicator ok", flush=True)
