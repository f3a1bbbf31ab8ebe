"""Run under mpiexec: DistributedDataParallel's defining properties on this many ranks.

Exits non-zero with a message naming the first property that fails.
"""

import sys
import threading

import numpy as np
from mpi4py import MPI

import minidl
import minidl.functional as F
from minidl import nn, optim
from minidl.distributed import DistributedDataParallel

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
rng = np.random.default_rng(42)  # same on every rank: every rank can build the global batch
STEPS, B = 4, 3  # steps, per-rank batch
X = rng.standard_normal((STEPS, size * B, 10))
Y = rng.integers(0, 4, (STEPS, size * B))


def make_model(seed):
    minidl.manual_seed(seed)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model


def train(model, module, batches):
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for x, y in batches:
        loss = F.cross_entropy(module(minidl.tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [p.data.copy() for p in model.parameters()]


def fail(msg):
    print(f"rank {rank}: FAIL {msg}", flush=True)
    comm.Abort(1)


def local(step):
    return X[step, rank * B : (rank + 1) * B], Y[step, rank * B : (rank + 1) * B]


# 0. the process group: avg and broadcast, against values computed by hand
from minidl import distributed as dist  # noqa: E402

if (dist.get_rank(), dist.get_world_size()) != (rank, size):
    fail("get_rank / get_world_size disagree with MPI")
a = np.arange(5.0) + rank
dist.all_reduce(a, "avg", algorithm="naive")
if not np.array_equal(a, np.arange(5.0) + (size - 1) / 2):  # mean of 0..p-1 is (p-1)/2, exact in binary
    fail(f"all_reduce avg gave {a}")
b = np.full(3, float(rank))
dist.broadcast(b, src=size - 1)
if not np.array_equal(b, np.full(3, size - 1.0)):
    fail(f"broadcast from rank {size - 1} gave {b}")

# 1. p ranks x batch B == 1 rank x batch p*B, for every bucketing and with/without overlap
ref_model = make_model(0)
reference = train(ref_model, ref_model, [(X[s], Y[s]) for s in range(STEPS)])
for overlap in (True, False):
    for cap_mb, first_mb in ((25.0, 1.0), (1e-4, 1e-4), (2e-3, 5e-4)):
        model = make_model(rank + 1)  # different init per rank: DDP must broadcast rank 0's
        if rank == 0:
            model = make_model(0)
        ddp = DistributedDataParallel(model, comm, bucket_cap_mb=cap_mb, first_bucket_mb=first_mb, overlap=overlap)
        got = train(model, ddp, [local(s) for s in range(STEPS)])
        for a, b in zip(got, reference):
            if not np.allclose(a, b, rtol=1e-10, atol=1e-12):
                err = np.abs(a - b).max()
                fail(f"DDP(overlap={overlap}, cap={cap_mb}) differs from 1 rank with batch {size * B}: {err}")
        if size > 1 and cap_mb < 1e-3 and len(ddp.buckets) < 3:
            fail(f"tiny bucket cap gave only {len(ddp.buckets)} buckets")
        ddp.close()

# 2. gradient accumulation with no_sync: two micro-batches == one batch of twice the size
model = make_model(0)
ddp = DistributedDataParallel(model, comm)
half = B // 2 + 1
x, y = local(0)
with ddp.no_sync():
    (F.cross_entropy(ddp(minidl.tensor(x[:half])), y[:half]) * (half / B)).backward()
(F.cross_entropy(ddp(minidl.tensor(x[half:])), y[half:]) * ((B - half) / B)).backward()
acc = [p.grad.data.copy() for p in model.parameters()]
ref_model = make_model(0)
F.cross_entropy(ref_model(minidl.tensor(X[0])), Y[0]).backward()
for a, r in zip(acc, ref_model.parameters()):
    if not np.allclose(a, r.grad.data, rtol=1e-10, atol=1e-12):
        fail("no_sync accumulation differs from the large-batch gradient")
ddp.close()


# 3. a parameter used on some ranks only: zero contribution, no hang
class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(3, 2)

    def forward(self, x, use_b):
        return self.a(x) + self.b(x) if use_b else self.a(x)


model = Branchy()
for p in model.parameters():
    p.data = p.data.astype(np.float64)
ddp = DistributedDataParallel(model, comm, bucket_cap_mb=1e-5, first_bucket_mb=1e-5)
x = minidl.tensor(np.ones((1, 3)))
ddp(x, use_b=(rank == 0)).sum().backward()
gb = model.b.weight.grad.data
if not np.allclose(gb, 1.0 / size):  # d(sum)/dW_b = 1 on rank 0 only, averaged over ranks
    fail(f"unused-parameter gradient {gb.ravel()} != {1.0 / size}")
ddp.close()


# 3b. no stale gradients: b used in step 1 and unused in step 2 gets zero in step 2, not step 1's
#     gradient still sitting in its bucket view; b used only in a no_sync micro-step keeps that gradient
def branchy(cap_mb):
    model = Branchy()
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model, DistributedDataParallel(model, comm, bucket_cap_mb=cap_mb, first_bucket_mb=cap_mb)


for cap_mb in (25.0, 1e-5):  # b shares a bucket with a / every parameter has its own bucket
    model, ddp = branchy(cap_mb)
    ddp(x, use_b=True).sum().backward()
    if not np.allclose(model.b.weight.grad.data, 1.0):  # d(sum)/dW_b = x = 1 on every rank
        fail(f"step 1 gradient of b {model.b.weight.grad.data.ravel()} != 1")
    model.zero_grad()
    ddp(x, use_b=False).sum().backward()
    gb = model.b.weight.grad
    if size == 1:  # nothing to synchronise: plain autograd, which leaves an unused gradient None
        stale = gb is not None
    else:
        stale = gb is None or np.any(gb.data != 0)
    if stale or not np.allclose(model.a.weight.grad.data, 1.0):
        fail(f"cap {cap_mb}: unused b in step 2 has gradient {None if gb is None else gb.data.ravel()}, expected 0")
    model.zero_grad()
    with ddp.no_sync():
        ddp(x, use_b=True).sum().backward()
    ddp(x, use_b=False).sum().backward()
    if not np.allclose(model.b.weight.grad.data, 1.0) or not np.allclose(model.a.weight.grad.data, 2.0):
        fail(f"cap {cap_mb}: no_sync gradient of b {model.b.weight.grad.data.ravel()} lost (expected 1)")
    flats = [b.flat for b in ddp.buckets]
    if not all(any(np.shares_memory(p.grad.data, f) for f in flats) for p in model.parameters()):
        fail("a gradient is not a view into its bucket")
    ddp.close()

# 4. replica consistency check names the step and the first differing parameter on every rank
model = make_model(0)
ddp = DistributedDataParallel(model, comm, check_every=1)
if size > 1 and rank == 1:
    model[2].weight.data[0, 0] += 1e-12
try:
    ddp(minidl.tensor(X[0][:B]))
    if size > 1:
        fail("diverged replicas were not detected")
except RuntimeError as e:
    if size == 1 or "2.weight" not in str(e) or "step 0" not in str(e):
        fail(f"unexpected replica error: {e}")
ddp.close()

# 5. noise-scale norms: the rank-mean of local squared norms rides in the last bucket's spare slot
model = make_model(0)
ddp = DistributedDataParallel(model, comm, measure_noise_scale=True, bucket_cap_mb=1e-4, first_bucket_mb=1e-4)
x, y = local(0)
F.cross_entropy(ddp(minidl.tensor(x)), y).backward()
ref_local = make_model(0)
F.cross_entropy(ref_local(minidl.tensor(x)), y).backward()
local_sq = sum(float(np.sum(p.grad.data**2)) for p in ref_local.parameters())
mean_local_sq = comm.allreduce(local_sq) / size
ref_global = make_model(0)
F.cross_entropy(ref_global(minidl.tensor(X[0])), Y[0]).backward()
global_sq = sum(float(np.sum(p.grad.data**2)) for p in ref_global.parameters())
if size > 1 and not np.isclose(ddp.stats.local_sq_norm, mean_local_sq, rtol=1e-9):  # 1 rank: nothing to sync
    fail(f"local squared norm {ddp.stats.local_sq_norm} != {mean_local_sq}")
if size > 1 and not np.isclose(ddp.stats.global_sq_norm, global_sq, rtol=1e-9):
    fail(f"global squared norm {ddp.stats.global_sq_norm} != {global_sq}")
for a, r in zip(model.parameters(), ref_global.parameters()):  # the spare slot must not leak into gradients
    if not np.allclose(a.grad.data, r.grad.data, rtol=1e-10, atol=1e-12):
        fail("gradients differ when the noise-scale slot is on")
ddp.close()

# 6. BatchNorm running statistics stay identical across replicas (rank 0's are broadcast)
minidl.manual_seed(rank)
model = nn.Sequential(nn.Linear(10, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 4))
ddp = DistributedDataParallel(model, comm, check_every=1)
opt = optim.SGD(model.parameters(), lr=0.1)
for s in range(3):
    x, y = local(s)
    F.cross_entropy(ddp(minidl.tensor(x.astype(np.float32))), y).backward()
    opt.step()
    opt.zero_grad()
with minidl.no_grad():  # a forward first broadcasts the buffers, then checks every tensor (check_every=1)
    ddp(minidl.tensor(x.astype(np.float32)))
ddp.close()

from minidl.distributed import comm as process_group  # noqa: E402


# 6b. the buffers travel as one broadcast of their bytes: every rank ends with rank 0's float32 and int64
#     values, bit for bit (the int64 values need all 8 bytes, so a misplaced or narrowed byte shows)
class WithBuffers(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.register_buffer("scale", np.zeros(5, np.float32))
        self.register_buffer("count", np.zeros(3, np.int64))
        self.register_buffer("shift", np.zeros((2, 2), np.float32))

    def forward(self, x):  # leaves the buffers alone, so what they hold after forward is what arrived
        return self.lin(x)


model = WithBuffers()
ddp = DistributedDataParallel(model, comm)
model.scale.data[...] = np.arange(5) + 0.25 + rank
model.count.data[...] = np.array([2**60 + 3, -(2**61) - 1, 7]) + rank  # beyond float64's 53 bits
model.shift.data[...] = -1.5 - rank
broadcasts = []
real_broadcast = process_group.broadcast  # what DistributedDataParallel calls
process_group.broadcast = lambda *a, **k: broadcasts.append(1) or real_broadcast(*a, **k)
try:
    ddp(minidl.tensor(np.ones((1, 3), np.float32)))
finally:
    process_group.broadcast = real_broadcast
if size > 1 and len(broadcasts) != 1:
    fail(f"the buffers took {len(broadcasts)} broadcasts, expected 1")
if not (
    np.array_equal(model.scale.data, np.arange(5, dtype=np.float32) + 0.25)
    and np.array_equal(model.count.data, np.array([2**60 + 3, -(2**61) - 1, 7]))
    and np.array_equal(model.shift.data, np.full((2, 2), -1.5, np.float32))
):
    fail(f"buffers after sync: {model.scale.data}, {model.count.data}, {model.shift.data}; expected rank 0's")
ddp.close()

# 7. a NaN on one rank reaches every rank through the average: all name the same first parameter
model = make_model(0)
ddp = DistributedDataParallel(model, comm, bucket_cap_mb=1e-4, first_bucket_mb=1e-4)
x, y = local(0)
F.cross_entropy(ddp(minidl.tensor(x)), y).backward()
if comm.allgather(ddp.first_nonfinite_gradient()) != [None] * size:
    fail("finite gradients reported as non-finite")
model.zero_grad()
if rank == size - 1:
    x = x.copy()
    x[0, 0] = np.nan  # one sample's input: its activations, hence every gradient, become NaN
F.cross_entropy(ddp(minidl.tensor(x)), y).backward()
names = comm.allgather(ddp.first_nonfinite_gradient())
if names != ["0.weight"] * size:
    fail(f"ranks disagree on the first non-finite gradient: {names}")
ddp.close()

# 7b. with overlap, every bucket but the last goes to the comm thread; the last is reduced on the training
#     thread at the end of backward (every gradient is ready by then, so a handover would only cost wake-ups)
from minidl.distributed.hooks import allreduce_hook  # noqa: E402

model = make_model(0)
ddp = DistributedDataParallel(model, comm, bucket_cap_mb=1e-4, first_bucket_mb=1e-4)
where = []
ddp.register_comm_hook(
    None,
    lambda state, bucket: (
        where.append((bucket.index, threading.current_thread() is threading.main_thread()))
        or allreduce_hook(state, bucket)
    ),
)
x, y = local(0)
F.cross_entropy(ddp(minidl.tensor(x)), y).backward()
last = len(ddp.buckets) - 1
expected = [(i, i == last) for i in range(last + 1)] if size > 1 else []  # one rank: nothing to reduce
if last < 2 or where != expected:
    fail(f"(bucket, on the training thread) per bucket: {where}, expected {expected}")
ddp.close()

# 8. a communication hook replaces the allreduce: a hook that sums then divides by hand gives the same
#    training as the default, sees every bucket once per step in order, and its byte report reaches stats;
#    the noise scale's spare slot is not handed to the hook but still arrives averaged
calls = []


def sum_then_divide(state, bucket):
    state.append((bucket.step, bucket.index, bucket.is_last, bucket.buffer.size))
    total = bucket.buffer.copy()
    comm.Allreduce(MPI.IN_PLACE, total, op=MPI.SUM)  # MPI's own sum: independent of the library's avg
    bucket.wire_bytes = 7
    return total / size


for noise in (False, True):
    calls.clear()
    model = make_model(0)
    ddp = DistributedDataParallel(model, comm, bucket_cap_mb=2e-3, first_bucket_mb=5e-4, measure_noise_scale=noise)
    ddp.register_comm_hook(calls, sum_then_divide)
    got = train(model, ddp, [local(s) for s in range(STEPS)])
    for a, b in zip(got, reference):
        if not np.allclose(a, b, rtol=1e-10, atol=1e-12):
            fail(f"a hook that sums and divides differs from 1 rank with batch {size * B} (noise={noise})")
    n = len(ddp.buckets)
    if size > 1:
        expected = [(st, i, i == n - 1) for st in range(STEPS) for i in range(n)]
        if [c[:3] for c in calls] != expected:
            fail(f"hook calls {calls} != one per bucket per step, in bucket order")
        sizes = sum(c[3] for c in calls[:n])
        if sizes != sum(p.size for p in model.parameters()):
            fail(f"the hook saw {sizes} elements per step, the model has {sum(p.size for p in model.parameters())}")
        if ddp.stats.wire_bytes != 7 * n:
            fail(f"stats.wire_bytes {ddp.stats.wire_bytes} != the hooks' reports {7 * n}")
        if noise and not np.isfinite(ddp.stats.local_sq_norm):
            fail("the noise scale's local norm was lost with a hook registered")
    try:
        ddp.register_comm_hook(None, sum_then_divide)
        fail("a second hook was accepted after training")
    except RuntimeError as e:
        if "already registered" not in str(e):
            fail(f"unexpected error for a second hook: {e}")
    ddp.close()

model = make_model(0)
ddp = DistributedDataParallel(model, comm)
ddp.register_comm_hook(None, lambda state, bucket: np.zeros(3))
x, y = local(0)
try:
    F.cross_entropy(ddp(minidl.tensor(x)), y).backward()
    if size > 1:
        fail("a hook returning the wrong shape was accepted")
except ValueError as e:
    if "returned shape (3,)" not in str(e):
        fail(f"unexpected error for a wrong-shape hook: {e}")
ddp.close()

comm.Barrier()
if rank == 0:
    print(f"{size} ranks: DDP ok")
sys.exit(0)
