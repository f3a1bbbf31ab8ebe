"""Run under mpiexec: DDP over a model that differs on rank 1 (``shape`` or ``extra`` layer).

Every rank must raise at construction; the error propagates, so the job exits non-zero.
"""

import sys

from mpi4py import MPI

from minidl import nn
from minidl.distributed import DistributedDataParallel

rank = MPI.COMM_WORLD.Get_rank()
case = sys.argv[1]
width = 5 if case == "shape" and rank == 1 else 4
layers = [nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 2)]
if case == "extra" and rank == 1:
    layers.append(nn.Linear(2, 2))
DistributedDataParallel(nn.Sequential(*layers))
print(f"rank {rank}: constructed", flush=True)
