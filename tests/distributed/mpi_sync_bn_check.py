"""Run under mpiexec: SyncBatchNorm on each rank's shard equals plain BatchNorm on the concatenated global batch.

The oracle is nn.BatchNorm1d/2d run in this process on the whole batch (every rank builds it from
the same seed). Shards have different sizes (one rank holds a single sample, one none at p >= 3).
Exits non-zero with a message naming the first property that fails.
"""

import sys

import numpy as np
from mpi4py import MPI

import minidl
from minidl import distributed as dist
from minidl import nn, optim
from minidl.distributed import DistributedDataParallel, SyncBatchNorm, convert_sync_batchnorm

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
rng = np.random.default_rng(7)  # same on every rank
TOL = 1e-10
SHARDS = {2: [3, 1], 3: [2, 4, 1]}[size]
SHARDS_1D = {2: [1, 2], 3: [1, 0, 3]}[size]


def fail(msg):
    print(f"rank {rank}: FAIL {msg}", flush=True)
    comm.Abort(1)


def close(name, got, want):
    if np.shape(got) != np.shape(want) or not np.allclose(got, want, rtol=TOL, atol=TOL):
        err = np.max(np.abs(np.asarray(got) - np.asarray(want))) if np.shape(got) == np.shape(want) else "shape"
        fail(f"{name}: differs from BatchNorm on the global batch (max error {err}, shapes {np.shape(got)})")


def mine(array, shards):
    lo = sum(shards[:rank])
    return array[lo : lo + shards[rank]]


def run(layer, x, g):
    xt = minidl.tensor(x, requires_grad=True)
    out = layer(xt)
    (out * minidl.tensor(g)).sum().backward()
    return out.data, xt.grad.data


def same_init(bn, sync):
    for name in ("weight", "bias"):
        value = rng.normal(size=bn.num_features)
        getattr(bn, name).data[...] = value
        getattr(sync, name).data[...] = value


# 1. the layer alone, three training steps (running statistics evolve), then eval
for make, shards, shape in ((nn.BatchNorm2d, SHARDS, (3, 4, 5)), (nn.BatchNorm1d, SHARDS_1D, (4,))):
    c = shape[0]
    bn, sync = make(c, dtype=np.float64), SyncBatchNorm(c, dtype=np.float64)
    same_init(bn, sync)
    for step in range(3):
        x = rng.normal(1.5, 2.0, (sum(shards), *shape))
        g = rng.normal(size=x.shape)
        bn.zero_grad(), sync.zero_grad()
        want_out, want_gx = run(bn, x, g)
        got_out, got_gx = run(sync, mine(x, shards), mine(g, shards))
        close(f"{make.__name__} step {step} output", got_out, mine(want_out, shards))
        close(f"{make.__name__} step {step} input grad", got_gx, mine(want_gx, shards))
        for name in ("weight", "bias"):
            total = dist.all_reduce(getattr(sync, name).grad.data.copy(), "sum")
            close(f"{make.__name__} step {step} {name} grad (summed over ranks)", total, getattr(bn, name).grad.data)
        for name in ("running_mean", "running_var"):
            close(f"{make.__name__} step {step} {name}", getattr(sync, name).data, getattr(bn, name).data)
        if int(sync.num_batches_tracked.data) != step + 1:
            fail(f"num_batches_tracked is {sync.num_batches_tracked.data} after {step + 1} steps")
    bn.eval(), sync.eval()
    x = rng.normal(size=(2, *shape))
    close(f"{make.__name__} eval output", sync(minidl.tensor(x)).data, bn(minidl.tensor(x)).data)


# 2. a converted model under DDP, two SGD steps: parameters and running statistics as one process on the global batch
def make_model():
    minidl.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 3, 3),
        nn.BatchNorm2d(3, momentum=None),
    )
    return model.double()


oracle, model = make_model(), convert_sync_batchnorm(make_model())
if sum(isinstance(m, SyncBatchNorm) for m in model.modules()) != 2:
    fail("convert_sync_batchnorm did not replace both BatchNorm2d layers")
ddp = DistributedDataParallel(model)
opt_o, opt_m = optim.SGD(oracle.parameters(), lr=0.1, momentum=0.9), optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for step in range(2):
    x = rng.normal(size=(sum(SHARDS), 2, 6, 6))
    g = rng.normal(size=(sum(SHARDS), 3, 4, 4))
    opt_o.zero_grad(), opt_m.zero_grad()
    # DDP averages the ranks' gradients of their local losses: the oracle's loss is the global sum over p
    (oracle(minidl.tensor(x)) * minidl.tensor(g / size)).sum().backward()
    (ddp(minidl.tensor(mine(x, SHARDS))) * minidl.tensor(mine(g, SHARDS))).sum().backward()
    for (name, p), q in zip(model.named_parameters(), oracle.parameters(), strict=True):
        close(f"DDP step {step} grad of {name}", p.grad.data, q.grad.data)
    opt_o.step(), opt_m.step()
for (name, value), want in zip(model.state_dict().items(), oracle.state_dict().values(), strict=True):
    close(f"DDP after 2 steps: {name}", value, want)
ddp.close()

comm.Barrier()
if rank == 0:
    print(f"{size} ranks: SyncBatchNorm ok", flush=True)
sys.exit(0)
