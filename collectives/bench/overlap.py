"""How much of a non-blocking allreduce hides behind computation, per progress mode.

For each mode ("thread", "test") and message size: t_comm = iallreduce then wait at once;
t_comp = the computation alone (numpy work in chunks that release the GIL, sized to take about
as long as the communication); t_both = start the iallreduce, compute (calling ``test()``
between chunks, as a training loop would between layers), then wait.
hidden = (t_comm + t_comp - t_both) / min(t_comm, t_comp): 1 means fully overlapped, 0 not at all.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from mpi4py import MPI

import collectives


def _compute(work: np.ndarray, chunks: int, poll=None) -> None:
    for _ in range(chunks):
        np.sqrt(work, out=work)
        np.multiply(work, 1.0000001, out=work)
        if poll is not None:
            poll()


def _timed(comm: MPI.Intracomm, fn) -> float:
    comm.Barrier()
    t0 = time.perf_counter()
    fn()
    return comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)


def measure_overlap(comm: MPI.Intracomm, sizes=(1 << 20, 8 << 20, 32 << 20), repeats: int = 5) -> list[dict]:
    collectives.set_checks(False)
    rank = comm.Get_rank()
    work = np.ones(1 << 18)
    results = []
    if rank == 0:
        size = comm.Get_size()
        print(f"# iallreduce overlap on {size} ranks (ring, float32); hidden = share of the shorter part hidden")
        print(f"#{'bytes':>11} {'progress':>9} {'comm ms':>8} {'comp ms':>8} {'both ms':>8} {'hidden':>7}")
    for nbytes in sizes:
        buf = np.zeros(nbytes // 4, np.float32)
        # size the computation to about the communication time
        t_comm0 = _timed(comm, lambda buf=buf: collectives.allreduce(buf, comm))
        t_chunk = _timed(comm, lambda: _compute(work, 20)) / 20
        chunks = comm.bcast(max(1, int(t_comm0 / max(t_chunk, 1e-6))))
        for mode in ("thread", "test"):
            rows = []
            for _ in range(repeats):
                t_comm = _timed(comm, lambda m=mode, b=buf: collectives.iallreduce(b, comm, progress=m).wait())
                t_comp = _timed(comm, lambda chunks=chunks: _compute(work, chunks))

                def both(mode=mode, buf=buf, chunks=chunks):
                    req = collectives.iallreduce(buf, comm, progress=mode)
                    _compute(work, chunks, req.test)
                    req.wait()

                t_both = _timed(comm, both)
                rows.append((t_comm, t_comp, t_both, (t_comm + t_comp - t_both) / min(t_comm, t_comp)))
            med = [statistics.median(r[i] for r in rows) for i in range(4)]
            results.append({"bytes": nbytes, "progress": mode, "comm_s": med[0], "comp_s": med[1], "both_s": med[2],
                            "hidden": med[3]})  # fmt: skip
            if rank == 0:
                print(f"{nbytes:>12} {mode:>9} {med[0] * 1e3:>8.2f} {med[1] * 1e3:>8.2f} {med[2] * 1e3:>8.2f} "
                      f"{med[3]:>7.2f}")  # fmt: skip
    return results
