"""Run under mpiexec: the compression hooks' defining properties on this many ranks.

Every rank can compute every rank's gradients (one shared generator), so the oracles are plain
numpy on the whole set; cross-rank sums the test itself needs use mpi4py's own Allreduce, not
the collectives under test. Exits non-zero naming the first property that fails.
"""

import math

import numpy as np
from mpi4py import MPI

import minidl
import minidl.functional as F
from minidl import nn, optim
from minidl.distributed import DistributedDataParallel, make_comm_hook
from minidl.distributed.compression import bf16_compress_hook, fp16_compress_hook
from minidl.distributed.hooks import GradBucket
from minidl.distributed.powersgd import PowerSGDState, powersgd_hook
from minidl.distributed.topk import TopKState, topk_hook

comm = MPI.COMM_WORLD
rank, p = comm.Get_rank(), comm.Get_size()
U16, UBF = 2.0**-11, 2.0**-8 + 2.0**-23  # unit roundoffs; bf16 adds a float32 rounding before its own
U32 = 2.0**-24


def fail(msg):
    print(f"rank {rank}: FAIL {msg}", flush=True)
    comm.Abort(1)


def bucket_of(shapes, flat, step=0, index=0):
    """A GradBucket over ``flat`` with views shaped ``shapes``, as DDP would hand it over."""
    views, offset = [], 0
    for shape in shapes:
        n = math.prod(shape)
        views.append(flat[offset : offset + n].reshape(shape))
        offset += n
    return GradBucket(index, flat, [None] * len(shapes), views, True, step, comm, "ring", None, True)


def same_on_all_ranks(a, what):
    everyone = comm.allgather(np.asarray(a).tobytes())
    if any(e != everyone[0] for e in everyone):
        fail(f"{what}: ranks hold different results")


def mean_over_ranks(a):
    out = np.empty_like(a)
    comm.Allreduce(np.ascontiguousarray(a), out, op=MPI.SUM)
    return out / p


def summation_bound(xs, u):
    """|computed - exact mean| for: round each x_i/p (rel. u), sum in any order rounding each partial
    sum (rel. u; Higham's gamma_{p-1}), plus float32's rounding of x/p and the final division."""
    gamma = (p - 1) * u / (1 - (p - 1) * u)
    return ((1 + u) * (1 + gamma) * (1 + U32) ** 2 - 1) * np.abs(xs).sum(axis=0) / p


def bf16_oracle(x):
    """Round float32 to 8 significant bits, ties to even, via frexp and numpy's round-half-even."""
    m, e = np.frexp(x.astype(np.float64))
    return np.ldexp(np.round(m * 2.0**8), e - 8)


rng = np.random.default_rng(7)
N = 1001
XS = (rng.standard_normal((p, N)) * np.exp(rng.uniform(-4, 4, (p, N)))).astype(np.float32)
exact = XS.astype(np.float64).mean(axis=0)

# 1. fp16: within the summation bound of the exact average, a float16 result, 2 bytes per element
b = bucket_of([(N,)], XS[rank].copy())
got = fp16_compress_hook(None, b)
if got.dtype != np.float16:
    fail(f"fp16 hook returned {got.dtype}")
err = np.abs(got.astype(np.float64) - exact)
bound = summation_bound(XS.astype(np.float64), U16) + p * 2.0**-25  # + float16 subnormal spacing, per rounding
if np.any(err > bound):
    i = int(np.argmax(err - bound))
    fail(f"fp16: |error| {err[i]:.3g} > bound {bound[i]:.3g} at {i}")
if p == 1 and not np.array_equal(got, XS[0].astype(np.float16)):
    fail("fp16 on one rank is not numpy's float16 rounding")
if b.wire_bytes != 2 * N:
    fail(f"fp16 wire bytes {b.wire_bytes} != {2 * N}")
same_on_all_ranks(got, "fp16")
big = bucket_of([(3,)], np.full(3, 60000.0, np.float32))  # the sum of p of them overflows float16; the average not
if not np.all(np.abs(fp16_compress_hook(None, big).astype(np.float64) - 60000.0) <= 32):
    fail("fp16 overflowed: the division by p must come before the sum")

# 2. bf16: the same bound with bfloat16's unit roundoff; on one rank exactly the oracle's rounding
b = bucket_of([(N,)], XS[rank].copy())
got = bf16_compress_hook(None, b)
err = np.abs(got.astype(np.float64) - exact)
bound = summation_bound(XS.astype(np.float64), UBF)
if np.any(err > bound):
    i = int(np.argmax(err - bound))
    fail(f"bf16: |error| {err[i]:.3g} > bound {bound[i]:.3g} at {i}")
if p == 1 and not np.array_equal(got.astype(np.float64), bf16_oracle(XS[0])):
    fail("bf16 on one rank is not round-to-nearest-even to 8 significant bits")
if p > 1 and not np.array_equal(bf16_oracle(got * p).astype(np.float32), got * p):
    fail("bf16: the sum is not a bfloat16 value (was it reduced in float32?)")
if b.wire_bytes != 2 * N:
    fail(f"bf16 wire bytes {b.wire_bytes} != {2 * N}")
same_on_all_ranks(got, "bf16")
huge = bucket_of([(2,)], np.full(2, 1e37, np.float32))  # bfloat16 has float32's range: no overflow
if not np.allclose(bf16_compress_hook(None, huge), 1e37, rtol=2**-7):
    fail("bf16 lost a value float32 can hold")

# 3. PowerSGD with rank >= min(n, m) and every matrix compressed: the exact average, step after step
SHAPES = [(6, 4), (4,), (3, 7), (2, 3, 2, 2), (5, 1)]  # a matrix, a bias, a wide one, a conv weight, a column
SIZES = [math.prod(s) for s in SHAPES]
T = 4
G = rng.standard_normal((T, p, sum(SIZES)))  # float64: the identities below hold to rounding
state = PowerSGDState(rank=7, min_compression_rate=0)
for t in range(T):
    b = bucket_of(SHAPES, G[t, rank].copy(), step=t)
    powersgd_hook(state, b)
    if not np.allclose(b.buffer, G[t].mean(axis=0), rtol=1e-9, atol=1e-12):
        fail(f"PowerSGD of full rank differs from the exact average at step {t}")
    same_on_all_ranks(b.buffer, "PowerSGD")
# wire bytes: the bias and every P = n x min(r, n, m), then every Q = m x min(r, n, m), 8 bytes each
mats = [(6, 4), (3, 7), (2, 12), (5, 1)]
expected = 8 * (4 + sum(n * min(7, n, m) for n, m in mats) + sum(m * min(7, n, m) for n, m in mats))
if b.wire_bytes != expected:
    fail(f"PowerSGD wire bytes {b.wire_bytes} != {expected}")

# 4. PowerSGD rank 1: compresses (not the average) and error feedback loses nothing:
#    sum of applied updates + the ranks' mean residual == sum of the true averages
state = PowerSGDState(rank=1, min_compression_rate=0)
applied = np.zeros(sum(SIZES))
for t in range(T):
    b = bucket_of(SHAPES, G[t, rank].copy(), step=t)
    powersgd_hook(state, b)
    applied += b.buffer
    same_on_all_ranks(b.buffer, "PowerSGD rank 1")
    if t == 0 and np.allclose(b.buffer, G[0].mean(axis=0)):
        fail("PowerSGD rank 1 returned the exact average: nothing was compressed")
residual = np.zeros(sum(SIZES))
offset = 0
for i, n in enumerate(SIZES):
    if (0, i) in state.residuals:
        residual[offset : offset + n] = state.residuals[(0, i)].reshape(-1)
    offset += n
if not np.allclose(applied + mean_over_ranks(residual), G.mean(axis=1).sum(axis=0), rtol=1e-11, atol=1e-12):
    fail("PowerSGD: applied + mean residual != sum of the true averages")
expected = 8 * (4 + sum(n for n, _ in mats) + sum(m for _, m in mats))
if b.wire_bytes != expected:
    fail(f"PowerSGD rank 1 wire bytes {b.wire_bytes} != {expected}")
# start_iter: plain allreduce (exact average, full bytes) before it
state = PowerSGDState(rank=1, start_iter=2, min_compression_rate=0)
b = bucket_of(SHAPES, G[0, rank].copy(), step=1)
powersgd_hook(state, b)
if not np.allclose(b.buffer, G[0].mean(axis=0), rtol=1e-12) or b.wire_bytes != 8 * sum(SIZES):
    fail("PowerSGD before start_iter is not a plain allreduce")

# 5. top-k with ratio 1 is the exact average; with error feedback the same identity as PowerSGD's
b = bucket_of([(N,)], XS[rank].astype(np.float64))
topk_hook(TopKState(ratio=1.0), b)
if not np.allclose(b.buffer, exact, rtol=1e-12, atol=0):
    fail("top-k with k = all differs from the exact average")
state = TopKState(ratio=0.05)
k = math.ceil(0.05 * sum(SIZES))
applied = np.zeros(sum(SIZES))
for t in range(T):
    b = bucket_of(SHAPES, G[t, rank].copy(), step=t)
    topk_hook(state, b)
    applied += b.buffer
    same_on_all_ranks(b.buffer, "top-k")
    if t == 0:  # no residual yet: each rank's k largest |g|, found by a full sort, averaged
        oracle = np.zeros(sum(SIZES))
        for r in range(p):
            top = np.argsort(-np.abs(G[0, r]))[:k]
            oracle[top] += G[0, r, top]
        if not np.allclose(b.buffer, oracle / p, rtol=1e-12, atol=0):
            fail("top-k's first step is not the average of every rank's k largest entries")
if not np.allclose(applied + mean_over_ranks(state.residuals[0]), G.mean(axis=1).sum(axis=0), rtol=1e-11, atol=1e-12):
    fail("top-k: applied + mean residual != sum of the true averages")
if b.wire_bytes != k * (8 + 4):
    fail(f"top-k wire bytes {b.wire_bytes} != {k * 12}")

# 5b. a NaN on one rank reaches every rank in that step, and the step after is finite again (the
#     residual that held it was dropped: kept, it would poison every later step)
for make, hook in ((lambda: PowerSGDState(rank=1, min_compression_rate=0), powersgd_hook), (TopKState, topk_hook)):
    state = make()
    g = G[0, rank].copy()
    if rank == p - 1:
        g[:] = np.nan
    b = bucket_of(SHAPES, g, step=0)
    hook(state, b)
    if not np.isnan(b.buffer).any():
        fail(f"{hook.__name__}: a NaN gradient on rank {p - 1} did not reach rank {rank}")
    b = bucket_of(SHAPES, G[1, rank].copy(), step=1)
    hook(state, b)
    if not np.isfinite(b.buffer).all():
        fail(f"{hook.__name__}: the step after a NaN is still non-finite")


# 6. in DDP, by name: replicas stay identical and stats.wire_bytes adds up the formula over the buckets
def make_model():
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    return model


layers = [(16, 10), (8, 16), (4, 8)]
n_biases = sum(n for n, _ in layers)
n_total = sum(n * m for n, m in layers) + n_biases
X = rng.standard_normal((3, p * 4, 10)).astype(np.float32)
Y = rng.integers(0, 4, (3, p * 4))
expected_wire = {
    "none": 4 * n_total,
    "fp16": 2 * n_total,
    "bf16": 2 * n_total,
    # one bucket; r = 2: the biases, P (n x 2) and Q (m x 2) of the weights the factors shrink at least 2x
    # (2 x 2(n + m) < n m: 16x10 and 8x16), and the 4x8 weight whole (2 x 2(4 + 8) = 48 > 32)
    "powersgd:rank=2": 4 * (n_biases + 2 * (16 + 10) + 2 * (8 + 16) + 4 * 8),
    "topk:ratio=0.1": math.ceil(0.1 * n_total) * (4 + 4),
}
for spec, wire in expected_wire.items():
    model = make_model()
    ddp = DistributedDataParallel(model, comm, check_every=1)
    state, hook = make_comm_hook(spec)
    if hook is not None:
        ddp.register_comm_hook(state, hook)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for s in range(3):
        x, y = X[s, rank * 4 : (rank + 1) * 4], Y[s, rank * 4 : (rank + 1) * 4]
        loss = F.cross_entropy(ddp(minidl.tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if p > 1 and ddp.stats.wire_bytes != wire:
            fail(f"{spec}: stats.wire_bytes {ddp.stats.wire_bytes} != {wire}")
        if p > 1 and ddp.stats.bytes != 4 * n_total:
            fail(f"{spec}: stats.bytes {ddp.stats.bytes} != {4 * n_total}")
    ddp.check_replicas()  # raises if the hook let the replicas drift apart
    ddp.close()

comm.Barrier()
if rank == 0:
    print(f"{p} ranks: hooks ok", flush=True)
