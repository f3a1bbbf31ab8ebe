"""Run under mpiexec: ``ddp.join()`` with deliberately uneven shards finishes, and every rank ends with the
parameters and momentum that a numpy replay of the same per-step contributions gives.

Arguments: ``active|world`` (the divisor: ranks still active, or the world size as PyTorch's default)
and ``flat|N`` (the gradient allreduce: flat, or hierarchical with N ranks per node).
Exits non-zero with a message naming the first property that fails.
"""

import sys

import numpy as np
from mpi4py import MPI

import minidl
from minidl import nn, optim
from minidl.distributed import DistributedDataParallel

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
divisor_kind, grouping = sys.argv[1], sys.argv[2]
ranks_per_node = None if grouping == "flat" else int(grouping)
BATCHES = [5, 2, 0, 4][:size]  # batches per rank: uneven, one rank with none at all (p >= 3)
B, IN, OUT, LR, MOMENTUM = 3, 4, 2, 0.1, 0.9
data = [np.random.default_rng(100 + r) for r in range(size)]  # every rank can rebuild every shard
SHARDS = [[(g.standard_normal((B, IN)), g.standard_normal((B, OUT))) for _ in range(n)] for g, n in zip(data, BATCHES)]


def fail(msg):
    print(f"rank {rank}: FAIL {msg}", flush=True)
    comm.Abort(1)


minidl.manual_seed(7 + rank)  # different on every rank: DDP starts all from rank 0's
model = nn.Linear(IN, OUT)
for p in model.parameters():
    p.data = p.data.astype(np.float64)
ddp = DistributedDataParallel(model, comm, algorithm="ring", ranks_per_node=ranks_per_node, check_every=2)
w0, b0 = model.weight.data.copy(), model.bias.data.copy()  # rank 0's, after the broadcast
opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

with ddp.join(divide_by_initial_world_size=divisor_kind == "world", optimizer=opt):
    for x, y in SHARDS[rank]:
        out = ddp(minidl.tensor(x))
        loss = ((out - minidl.tensor(y)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

# The replay, by hand: step s averages the gradients of the ranks that still have a batch s.
w, b = w0.copy(), b0.copy()
vw = vb = None
for s in range(max(BATCHES)):
    active = [r for r in range(size) if BATCHES[r] > s]
    gw, gb = np.zeros_like(w), np.zeros_like(b)
    for r in active:
        x, y = SHARDS[r][s]
        dout = 2 * (x @ w.T + b - y) / y.size  # d mean((xW^T + b - y)^2) / d out
        gw += dout.T @ x
        gb += dout.sum(axis=0)
    n = size if divisor_kind == "world" else len(active)
    gw, gb = gw / n, gb / n
    vw, vb = (gw, gb) if vw is None else (MOMENTUM * vw + gw, MOMENTUM * vb + gb)
    w, b = w - LR * vw, b - LR * vb

if not np.allclose(model.weight.data, w, rtol=1e-10, atol=1e-12) or not np.allclose(model.bias.data, b, 1e-10, 1e-12):
    fail(f"parameters differ from the replay: weight {model.weight.data} vs {w}")
momentum = opt.state[id(model.weight)]["momentum_buffer"]
if not np.allclose(momentum, vw, rtol=1e-10, atol=1e-12):
    fail(f"the momentum buffer differs from the replay: {momentum} vs {vw}")
mine = np.concatenate([model.weight.data.ravel(), model.bias.data.ravel(), momentum.ravel()])
everyone = np.empty((size, mine.size))
comm.Allgather(mine, everyone)
if any(everyone[r].tobytes() != mine.tobytes() for r in range(size)):
    fail("the replicas differ bitwise after join")
if ddp.steps != max(BATCHES):
    fail(f"ddp.steps is {ddp.steps}, expected {max(BATCHES)} on every rank (shadowed steps count)")
ddp.close()
comm.Barrier()
if rank == 0:
    print(f"{size} ranks, batches {BATCHES}, divisor {divisor_kind}, {grouping}: join ok", flush=True)
