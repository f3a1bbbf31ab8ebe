"""Under mpiexec: allreduce(link=...) gives numpy's result, takes the link's time, and keeps one transport per link."""

import time

import numpy as np
from mpi4py import MPI

import collectives
from collectives.context import context

comm = MPI.COMM_WORLD
rank, p = comm.Get_rank(), comm.Get_size()
ctx = context(comm)
spec = "1Gbps,2ms"  # slow enough that a step without the emulation is far quicker

inputs = [np.arange(5, dtype=np.float64) * (r + 1) for r in range(p)]
expected = np.sum(inputs, axis=0)
first = None
start = time.perf_counter()
for i in range(5):
    link = spec if i % 2 else collectives.parse_link(spec)  # a string and a Link name the same link
    buf = inputs[rank].copy()
    collectives.allreduce(buf, comm, algorithm="ring", link=link)
    assert np.array_equal(buf, expected), (rank, buf, expected)
    transport = ctx.emulated(spec)
    first = first or transport
    assert transport is first, "the emulated transport was rebuilt"
elapsed = time.perf_counter() - start
steps = 2 * (p - 1)  # the ring's reduce-scatter and allgather steps
least = 5 * steps * collectives.parse_link(spec).message_time(0)
assert elapsed >= least, f"5 emulated allreduces took {elapsed:.4f} s, the link model says at least {least:.4f} s"
comm.Barrier()
if rank == 0:
    print(f"{p} ranks: link emulation ok ({elapsed:.3f} s >= {least:.3f} s)")
