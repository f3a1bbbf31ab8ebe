"""Run under mpiexec: ZeroRedundancyOptimizer's defining properties on this many ranks.

The oracle everywhere is plain DDP with the unsharded optimizer (itself tested against one
process on the global batch in mpi_ddp_check.py), trained on the same data from the same start.
Exits non-zero with a message naming the first property that fails.

Why the results must be *bitwise* equal, not merely close: stage 1 averages the gradients with the
very same allreduce as the reference; stage 2's ring reduce-scatter is the first half of the ring
allreduce's walk over the same chunks, so every element is summed in the same order and divided
by p the same way. SGD and Adam update every element on its own with the same arithmetic, so the
cut into shards changes no operation. (Clipping is the exception: its norm is summed shard by
shard, in another order; there the tolerance is relative 1e-12, thousands of float64 roundings
of ~1e-16 at the norm's magnitude, and the scale factor carries that relative error into the update.)
"""

import os
import sys
import tempfile

import numpy as np
from mpi4py import MPI

import minidl
import minidl.functional as F
from minidl import nn, optim
from minidl.checkpoint import load_checkpoint, save_checkpoint
from minidl.distributed import DistributedDataParallel, ZeroRedundancyOptimizer

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
rng = np.random.default_rng(7)  # same on every rank
STEPS, B = 5, 3
X = rng.standard_normal((2 * STEPS, size * B, 11))
Y = rng.integers(0, 2, (2 * STEPS, size * B))
# bucket caps in MB: tiny, so the 13x11, 7x13 ... parameters spread over several buckets of sizes
# not divisible by p; the first bucket (the last layer's bias, 2 elements) is smaller than p = 3, 4
CAP_MB, FIRST_MB = 6e-4, 1e-5
OPTIMIZERS = [
    ("sgd-momentum", optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=1e-3), 1),
    ("sgd-nesterov", optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True), 1),
    ("adam", optim.Adam, dict(lr=1e-2, weight_decay=1e-3), 2),
    ("adamw-amsgrad", optim.AdamW, dict(lr=1e-2, amsgrad=True), 3),
]


def fail(msg):
    print(f"rank {rank}: FAIL {msg}", flush=True)
    comm.Abort(1)


def make_model():
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Linear(11, 13), nn.Tanh(), nn.Linear(13, 7), nn.Tanh(), nn.Linear(7, 2))
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model


def batch(step, c=comm):
    r = c.Get_rank()
    return minidl.tensor(X[step, r * B : (r + 1) * B]), Y[step, r * B : (r + 1) * B]


def backward(ddp, step, c=comm):
    x, y = batch(step, c)
    F.cross_entropy(ddp(x), y).backward()


def run(opt_cls, kw, stage, steps, c=comm, clip=None, start=0, state=None):
    """(model, ddp, optimizer) after ``steps`` steps; stage 0 is the reference (plain optimizer)."""
    model = make_model()
    ddp = DistributedDataParallel(model, c, bucket_cap_mb=CAP_MB, first_bucket_mb=FIRST_MB)
    opt = opt_cls(model.parameters(), **kw) if stage == 0 else ZeroRedundancyOptimizer(ddp, opt_cls, stage, **kw)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    for s in range(start, start + steps):
        opt.zero_grad()
        backward(ddp, s, c)
        if clip is not None:
            if stage == 0:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            else:
                opt.clip_grad_norm_(clip)
        opt.step()
    return model, ddp, opt


def params(model):
    return [p.data.copy() for p in model.parameters()]


def same(a, b, what, rtol=0.0):
    """Equal within ``rtol`` (0: bitwise, as |u - v| <= 0)."""
    for i, (u, v) in enumerate(zip(a, b)):
        if not np.allclose(u, v, rtol=rtol, atol=0.0):
            fail(f"{what}: parameter {i} differs from the reference by {np.abs(u - v).max():.3g}")


def state_bytes(opt):
    return sum(v.nbytes for s in opt.state.values() for v in s.values() if isinstance(v, np.ndarray))


def chunk(n, p, r):
    """Elements of chunk r when n elements are cut in p nearly equal chunks, the first n % p longer."""
    return n // p + (1 if r < n % p else 0)


# 1. identical to DDP with the unsharded optimizer, stages 1 and 2; 2. memory; 3. checkpoints
for name, opt_cls, kw, arrays_per_element in OPTIMIZERS:
    ref_model, ref_ddp, ref_opt = run(opt_cls, kw, 0, STEPS)
    reference = params(ref_model)
    ref_state = ref_opt.state_dict()
    total_state = state_bytes(ref_opt)
    for stage in (1, 2):
        model, ddp, zero = run(opt_cls, kw, stage, STEPS)
        if size > 1 and len(ddp.buckets) < 3:
            fail(f"the bucket caps gave only {len(ddp.buckets)} buckets")
        same(params(model), reference, f"{name} stage {stage} after {STEPS} steps")

        # memory: this rank's chunk of every bucket, for every state array of an element
        sizes = [sum(p.size for p in b.params) for b in ddp.buckets]
        expected = sum(chunk(n, size, rank) for n in sizes) * 8  # float64
        mem = zero.memory()
        if mem["optimizer_state"] != expected * arrays_per_element:
            fail(f"{name} stage {stage}: state {mem['optimizer_state']} B, expected {expected} x {arrays_per_element}")
        if comm.allreduce(mem["optimizer_state"]) != total_state:
            fail(
                f"{name} stage {stage}: the shards' state adds up to {comm.allreduce(mem['optimizer_state'])} B, "
                f"the unsharded optimizer holds {total_state} B"
            )
        kept = expected if stage == 2 and size > 1 else sum(sizes) * 8
        if mem["averaged_gradient"] != kept:
            fail(f"{name} stage {stage}: averaged gradient kept {mem['averaged_gradient']} B, expected {kept}")

        # checkpoint: the gathered state is the unsharded optimizer's, array for array
        try:
            zero.state_dict()
            fail("state_dict() before consolidate_state_dict() did not raise")
        except RuntimeError as e:
            if "consolidate_state_dict" not in str(e):
                fail(f"unexpected error: {e}")
        zero.consolidate_state_dict(to=size - 1)
        if rank == size - 1:
            got = zero.state_dict()
            if got["param_groups"] != ref_state["param_groups"] or sorted(got["state"]) != sorted(ref_state["state"]):
                fail(f"{name} stage {stage}: consolidated groups/keys differ: {got['param_groups']}")
            for i, entry in ref_state["state"].items():
                for k, v in entry.items():
                    if not np.array_equal(got["state"][i][k], v):
                        fail(f"{name} stage {stage}: consolidated state {i}/{k} differs")
        ddp.close()
    ref_ddp.close()

# 3b. save on p ranks, resume on p ranks and on fewer (a resharded load); continue == the reference
opt_cls, kw = optim.Adam, dict(lr=1e-2, weight_decay=1e-3)
tmp = comm.bcast(tempfile.mkdtemp() if rank == 0 else None)
path = os.path.join(tmp, "zero.npz")
model, ddp, zero = run(opt_cls, kw, 2, STEPS)
zero.consolidate_state_dict(0)
if rank == 0:
    save_checkpoint(path, model=model, optimizer=zero)
ddp.close()
comm.Barrier()
state = load_checkpoint(path)
for q in sorted({size, max(1, size - 1), 1}):
    sub = comm.Split(0 if rank < q else MPI.UNDEFINED, rank)
    if sub != MPI.COMM_NULL:
        ref_model, ref_ddp, _ = run(opt_cls, kw, 0, 3, sub, start=STEPS, state=state)
        for stage in (1, 2):
            m, d, _ = run(opt_cls, kw, stage, 3, sub, start=STEPS, state=state)
            same(params(m), params(ref_model), f"saved on {size} ranks, resumed on {q} at stage {stage}")
            d.close()
        ref_ddp.close()
        sub.Free()
    comm.Barrier()

# 4. clipping on the shards == clip_grad_norm_ on the whole gradient (max_norm small enough to clip)
ref_model, ref_ddp, _ = run(optim.SGD, dict(lr=0.1, momentum=0.9), 0, STEPS, clip=0.05)
for stage in (1, 2):
    model, ddp, _ = run(optim.SGD, dict(lr=0.1, momentum=0.9), stage, STEPS, clip=0.05)
    same(params(model), params(ref_model), f"clipped, stage {stage}", rtol=1e-12)
    ddp.close()
ref_ddp.close()

# 5. a NaN in one parameter's gradient on one rank: every rank names it, as DDP does
for target in ("4.bias", "2.weight"):
    for stage in (0, 1, 2):
        model, ddp, opt = run(optim.Adam, {}, stage, 0)
        x, y = batch(0)
        loss = F.cross_entropy(ddp(x), y)
        if rank == size - 1:
            loss = loss + dict(model.named_parameters())[target].sum() * float("nan")
        loss.backward()
        bad = (ddp if stage == 0 else opt).first_nonfinite_gradient()
        if bad != target:
            fail(f"stage {stage}: first non-finite gradient {bad!r}, expected {target!r}")
        ddp.close()
for stage in (1, 2):
    model, ddp, zero = run(optim.Adam, {}, stage, 0)
    backward(ddp, 0)
    if zero.first_nonfinite_gradient() is not None:
        fail(f"stage {stage}: finite gradients reported non-finite")
    ddp.close()

# 6. refusals
model = make_model()
ddp = DistributedDataParallel(model, comm)
for bad_call, words in [
    (lambda: ZeroRedundancyOptimizer(ddp, optim.LARS, lr=0.1), "LARS is not supported"),
    (lambda: ZeroRedundancyOptimizer(model, optim.SGD, lr=0.1), "pass the DistributedDataParallel model"),
    (lambda: ZeroRedundancyOptimizer(ddp, optim.SGD, stage=3, lr=0.1), "stage must be 1 or 2, got 3"),
]:
    try:
        bad_call()
        fail(f"no error ({words})")
    except (ValueError, TypeError) as e:
        if words not in str(e):
            fail(f"error {e!r} does not say {words!r}")
ddp.close()

comm.Barrier()
if rank == 0:
    print(f"{size} ranks: ZeRO ok", flush=True)
sys.exit(0)
