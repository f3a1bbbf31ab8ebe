"""Write your own allreduce, register it, and run the whole simulator harness on it with one call.

The algorithm here is the simplest one that is not the naive baseline: every rank sends its
whole buffer to every other rank (an allgather, as p-1 shifted exchanges), then reduces the p
contributions locally. Each rank sends (p-1) n bytes instead of the 2(p-1)/p n a ring sends;
the harness's counters show exactly that, and its closed form below matches the simulation.

    python examples/custom_allreduce.py            # the full harness (about a minute)
    python examples/custom_allreduce.py --quick    # small rank counts only (seconds)

Every command line that takes an algorithm name takes ``package.module:function`` as well
(importable from the current directory; the module's ``function_cost`` is its closed form, or
point at an ``AlgorithmSpec``). From the repository root:

    python -m collectives.sim check examples.custom_allreduce:allgather_reduce --quick
    python -m collectives.sim run examples.custom_allreduce:allgather_reduce,ring --ranks 16 --size 1M
    python -m collectives.sim sweep --algorithms examples.custom_allreduce:allgather_reduce,ring --sizes 1K..1M:x32
    python -m collectives.sim numerics examples.custom_allreduce:allgather_reduce --ranks 4,16
    mpiexec -n 4 python -m collectives.bench -a examples.custom_allreduce:allgather_reduce -e 1M
    mpiexec -n 2 python -m minidl.train --algorithm examples.custom_allreduce:allgather_reduce --epochs 1

and from Python, once the module is imported (which registers it as "allgather_reduce"):

    mpiexec -n 4 python -c "import numpy as np, collectives, examples.custom_allreduce as ex; \
        print(collectives.allreduce(np.arange(8.0), algorithm='allgather_reduce'))"
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np

import collectives
from collectives import AlgorithmSpec, Cost
from collectives.ops import ReduceOp
from collectives.transport import Step, Transport


def allgather_reduce(t: Transport, buf: np.ndarray, op: ReduceOp) -> Iterator[Step]:
    """Gather every rank's buffer into slot r of a scratch block, then reduce slots 0..p-1 in order.

    Reducing in rank order on every rank gives bitwise identical results everywhere, which
    data-parallel replicas need (summing in a rank-dependent order would not).
    """
    p, r, n = t.size, t.rank, buf.size
    if p == 1:
        return
    slots = t.scratch(p * n, buf.dtype)

    def slot(i: int) -> np.ndarray:
        return slots[i * n : (i + 1) * n]

    t.copy(slot(r), buf)
    for k in range(1, p):  # p-1 shifted exchanges: every rank sends to one and receives from one at a time
        yield t.sendrecv(buf, (r + k) % p, slot((r - k) % p), (r - k) % p, k)
    t.copy(buf, slot(0))
    for i in range(1, p):
        t.reduce(op, buf, slot(i))


def allgather_reduce_cost(p: int, nbytes: int, itemsize: int = 1) -> Cost:
    """(p-1) (alpha + n beta) + (p-1) n gamma: p-1 exchanges of n bytes, then p-1 local reductions."""
    n = nbytes // itemsize * itemsize
    return Cost(
        latency_terms=p - 1,
        transfer_bytes=(p - 1) * n,
        reduce_bytes=(p - 1) * n,
        messages_per_rank=p - 1,
        bytes_sent_per_rank=(p - 1) * n,
    )


SPEC = AlgorithmSpec("allgather_reduce", allgather_reduce, allgather_reduce_cost, "allgather, then reduce locally")
if SPEC.name not in collectives.ALGORITHMS:
    collectives.register(SPEC)


def main(quick: bool = False) -> int:
    from collectives import sim

    options = {"ranks": (1, 2, 3, 4, 5, 8), "large_ranks": (), "symbolic_ranks": (1, 2, 3, 4, 7, 16)} if quick else {}
    report = sim.check("allgather_reduce", **options)  # the one call: real data, symbolic, counters, formula
    print(report)

    # And what it would cost on a cluster, next to the ring, from the same code:
    model = sim.CostModel.textbook(alpha=2e-6, beta=1 / 12.5e9, gamma=1 / 4e9)
    for name in ("allgather_reduce", "ring"):
        for nbytes in (4 << 10, 64 << 20):
            res = sim.simulate(name, 16, nbytes, model=model)
            print(f"{name:>17} on 16 ranks, {nbytes:>9} B: {res.time * 1e6:9.1f} us, busbw {res.busbw / 1e9:.2f} GB/s")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(quick="--quick" in sys.argv[1:]))
