"""Run under mpiexec -n 2: rank 1 stalls before its second step; rank 0's DDP must not wait for ever.

The watchdog (timeout 2 s) makes rank 0's gradient allreduce raise, naming the missing rank, and
abort_on_error ends the job.
"""

import time

import numpy as np

import minidl
import minidl.functional as F
from minidl import distributed as dist
from minidl import nn

dist.abort_on_error()
dist.set_timeout(2.0)
rank = dist.get_rank()
model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
ddp = dist.DistributedDataParallel(model)
x, y = minidl.tensor(np.ones((2, 4), np.float32)), np.array([0, 1])
for step in range(2):
    if step == 1 and rank == 1:
        time.sleep(120)  # stuck in its own code
    F.cross_entropy(ddp(x), y).backward()
    model.zero_grad()
print(f"rank {rank}: finished", flush=True)
