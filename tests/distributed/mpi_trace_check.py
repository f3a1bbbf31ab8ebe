"""Run under mpiexec: a StepTracer's file holds every rank's phases and exactly DDP's bucket intervals.

Several small buckets (a tiny cap) and a few steps; each rank keeps DDP's own ``stats.intervals``
per step, rank 0 gathers them and compares them with the trace's communication slices.
Exits non-zero with a message naming the first property that fails.
"""

import json
import sys
import time

import numpy as np
from mpi4py import MPI

import minidl
import minidl.functional as F
from minidl import nn, optim
from minidl.distributed import DistributedDataParallel
from minidl.distributed.timing import StepTimer
from minidl.distributed.trace import StepTracer

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
path = sys.argv[1]
STEPS, TRACED = 4, 3

minidl.manual_seed(0)
model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
ddp = DistributedDataParallel(model, comm, bucket_cap_mb=1500 / 2**20, first_bucket_mb=1500 / 2**20)
opt = optim.SGD(model.parameters(), lr=0.1)
rng = np.random.default_rng(rank)
comm.Barrier()
timer = StepTimer(keep_intervals=True)
tracer = StepTracer(timer.origin, max_steps=TRACED)
expected = []  # (step, bucket, start, end) in seconds since the origin, straight from DDP
for step in range(1, STEPS + 1):
    timing = timer.start_step()
    with timer.phase("forward"):
        loss = F.cross_entropy(ddp(minidl.Tensor(rng.standard_normal((8, 10)))), rng.integers(0, 4, 8))
    with timer.phase("backward"):
        loss.backward()
    with timer.phase("optimizer"):
        opt.step()
        opt.zero_grad()
    time.sleep(0.002)  # a gap between steps, so that steps cannot touch
    if step <= TRACED:
        expected += [(step, b, s - timer.origin, e - timer.origin) for b, s, e in ddp.stats.intervals]
    tracer.record(step, timing.intervals, timer.origin, ddp)
written = tracer.write(path, comm, algorithm=ddp.algorithm)
expected = comm.gather(expected, root=0)
buckets = len(ddp.buckets)
ddp.close()


def fail(msg):
    print(f"FAIL {msg}", flush=True)
    sys.exit(1)


if rank == 0:
    if str(written) != path:
        fail(f"rank 0's write returned {written}")
    doc = json.loads(open(path).read())
    events = doc["traceEvents"]
    names = {(e["pid"], e["tid"], e["name"]): e["args"] for e in events if e["ph"] == "M"}
    for r in range(size):
        if names.get((r, 0, "process_name")) != {"name": f"rank {r}"}:
            fail(f"rank {r} has no process named 'rank {r}'")
        if names.get((r, 0, "thread_name")) != {"name": "main thread"} or (r, 1, "thread_name") not in names:
            fail(f"rank {r} lacks its main or comm track")
    slices = [e for e in events if e["ph"] == "X"]
    if any(e["dur"] < 0 for e in slices):
        fail("a negative duration")
    if buckets < 3:
        fail(f"expected several buckets, DDP built {buckets}")
    for r in range(size):
        comm_slices = sorted(
            (e["args"]["step"], e["args"]["bucket"], e["ts"], e["ts"] + e["dur"])
            for e in slices
            if e["pid"] == r and e["tid"] == 1
        )
        want = sorted((s, b, 1e6 * t0, 1e6 * t1) for s, b, t0, t1 in expected[r])
        if len(comm_slices) != TRACED * buckets or len(want) != len(comm_slices):
            fail(f"rank {r}: {len(comm_slices)} bucket slices, DDP reported {len(want)}, expected {TRACED * buckets}")
        for got, exp in zip(comm_slices, want):
            if got[:2] != exp[:2] or abs(got[2] - exp[2]) > 1e-3 or abs(got[3] - exp[3]) > 1e-3:
                fail(f"rank {r}: bucket slice {got} but DDP's interval {exp}")
        main = [e for e in slices if e["pid"] == r and e["tid"] == 0]
        for step in range(1, TRACED + 1):
            phases = {e["name"]: e for e in main if e["args"]["step"] == step}
            if not {"step " + str(step), "forward", "backward", "optimizer"} <= set(phases):
                fail(f"rank {r} step {step}: phases {sorted(phases)}")
            outer = phases[f"step {step}"]
            for e in phases.values():
                if e["ts"] < outer["ts"] or e["ts"] + e["dur"] > outer["ts"] + outer["dur"] + 1e-6:
                    fail(f"rank {r} step {step}: {e['name']} outside its step slice")
            if "exposed_comm" in phases:  # backward's final wait, right after computation
                back, wait = phases["backward"], phases["exposed_comm"]
                if abs(back["ts"] + back["dur"] - wait["ts"]) > 1e-3:
                    fail(f"rank {r} step {step}: exposed_comm does not follow backward")
        if any(e["args"]["step"] > TRACED for e in slices):
            fail("a step past max_steps was recorded")
    print(f"{size} ranks: trace ok ({len(slices)} slices, {buckets} buckets per step)", flush=True)
