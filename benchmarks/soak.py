"""Soak: thousands of allreduces of random sizes, algorithms, ops and dtypes, checking each one.

    mpiexec -n 4 python benchmarks/soak.py [--iterations 10000] [--max-elements 65536] [--seed 0]

Every rank draws the same sequence of calls from ``--seed``: a size, an algorithm (every
registered one and "auto"), an op and a dtype; four calls in five are blocking ``allreduce``, the rest a
batch of one to four outstanding ``iallreduce`` requests in a random progress mode. Inputs are
small integers cut from one shared table, so each rank computes the exact expected result with
plain numpy in int64 (not with ``collectives.ops``) and compares every element of every call.

Sizes come from a pool of ``--distinct-sizes`` sizes (log-uniform from 0 to ``--max-elements``,
so most are small and some large), as a program repeats its sizes. The library keeps bounded
caches keyed by size (tree shapes, chunk bounds: up to 4096 entries each), which fill during
the warm-up; with ``--distinct-sizes 0`` every call has a fresh size and those caches keep
filling for the whole run, so growth then says how big they get, not whether memory leaks.

At the end it reports, over all ranks:

- wrong results (must be 0);
- resident memory (RSS) growth from the end of the warm-up to the end (must stay under
  ``--max-growth``, default 5%): the warm-up runs every algorithm once at the largest size, so
  the scratch arenas have reached their final size, and once at every size of the pool; the
  size of the per-communicator caches (plans, arena views) is printed beside it;
- leaked requests: non-blocking requests still alive after they were waited on and dropped,
  requests the progress thread still holds, and messages nobody received (a probe of the
  collectives' private communicator).

It exits 1 if any check fails. A hang is ended by ``--time-limit`` (a traceback of every thread
is printed first), and an exception on any rank aborts the whole job. Not part of the test
suite: it takes minutes (figures in docs/testing.md).
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import math
import os
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DTYPES = [np.dtype(t) for t in ("int32", "int64", "float32", "float64")]
OPS = ["sum", "prod", "max", "min", "avg"]
BATCH_SHARE = 0.2  # share of iterations that start a batch of iallreduce requests instead


@dataclass(frozen=True)
class Call:
    algorithm: str
    op: str
    dtype: np.dtype
    n: int
    offsets: tuple[int, ...]  # where each rank's input starts in the shared table

    def __str__(self) -> str:
        return f"{self.algorithm} {self.op} {self.dtype} n={self.n}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mpiexec -n P python benchmarks/soak.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--iterations", type=int, default=10_000, help="iterations after warm-up (default: 10000)")
    parser.add_argument("--warmup", type=int, default=500, help="iterations before the memory baseline (default: 500)")
    parser.add_argument("--max-elements", type=int, default=1 << 16, help="largest call (default: 65536)")
    parser.add_argument(
        "--distinct-sizes", type=int, default=256, help="sizes in the pool; 0: a fresh size every call (default: 256)"
    )
    parser.add_argument("--max-growth", type=float, default=0.05, help="allowed RSS growth (default: 0.05 = 5%%)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every choice (default: 0)")
    parser.add_argument("--time-limit", type=float, default=1800, help="seconds before a hang is ended (default: 1800)")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.warmup < 0 or args.max_elements < 1 or args.distinct_sizes < 0:
        parser.error("--iterations and --max-elements must be at least 1, --warmup and --distinct-sizes at least 0")
    if not (0 < args.max_growth and math.isfinite(args.max_growth)):
        parser.error(f"--max-growth must be a positive fraction, got {args.max_growth}")
    if not args.time_limit > 0:
        parser.error(f"--time-limit must be positive seconds, got {args.time_limit}")
    return args


def rss_bytes() -> int:
    """This process's resident memory now (not the peak, which only ever grows)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Inputs:
    """Rank r's input of a call is ``table[offsets[r]:][:n]``: small integers, exact in every dtype."""

    def __init__(self, seed: int, max_elements: int) -> None:
        rng = np.random.default_rng(seed)
        self.span = 4 * max_elements + 1
        self.small = rng.integers(-3, 4, self.span + max_elements)  # sum, max, min, avg
        self.units = np.where(rng.random(self.span + max_elements) < 0.5, -1, 1)  # prod: stays exact

    def table(self, op: str) -> np.ndarray:
        return self.units if op == "prod" else self.small

    def mine(self, call: Call, rank: int) -> np.ndarray:
        start = call.offsets[rank]
        return self.table(call.op)[start : start + call.n].astype(call.dtype)

    def expected(self, call: Call) -> np.ndarray:
        """The exact answer in int64, then the dtype; avg divides once (truncating for integers)."""
        rows = np.stack([self.table(call.op)[s : s + call.n] for s in call.offsets]).astype(np.int64)
        p = len(call.offsets)
        if call.op in ("sum", "avg"):
            total = rows.sum(axis=0)
        else:
            total = {"prod": rows.prod, "max": rows.max, "min": rows.min}[call.op](axis=0)
        if call.op != "avg":
            return total.astype(call.dtype)
        if call.dtype.kind == "i":
            return (np.sign(total) * (np.abs(total) // p)).astype(call.dtype)
        return (total / p).astype(call.dtype)  # float64 quotient, rounded once more: exact for these dtypes


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        from mpi4py import MPI

        import collectives

        self.MPI, self.collectives = MPI, collectives
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.args = args
        self.rng = np.random.default_rng(args.seed)  # the same draws on every rank
        self.inputs = Inputs(args.seed, args.max_elements)
        self.algorithms = [*sorted(collectives.ALGORITHMS), "auto"]
        self.wrong: list[str] = []
        self.calls = Counter()
        self.log_max = math.log(args.max_elements + 1)
        self.iteration = -1  # -1: warming up
        self.pool = sorted({self.fresh_size() for _ in range(args.distinct_sizes)})

    def fresh_size(self) -> int:
        return int(math.exp(self.rng.uniform(0, self.log_max))) - 1

    def draw(self, n: int | None = None, algorithm: str | None = None) -> Call:
        rng = self.rng
        if n is None:
            n = self.pool[rng.integers(len(self.pool))] if self.pool else self.fresh_size()
        return Call(
            algorithm or self.algorithms[rng.integers(len(self.algorithms))],
            OPS[rng.integers(len(OPS))],
            DTYPES[rng.integers(len(DTYPES))],
            n,
            tuple(int(o) for o in rng.integers(0, self.inputs.span, self.size)),
        )

    def verify(self, call: Call, got: np.ndarray, how: str) -> None:
        want = self.inputs.expected(call)
        if not np.array_equal(got, want):
            bad = np.flatnonzero(got != want)
            self.wrong.append(
                f"{how} {call}: {bad.size} wrong elements, first [{bad[0]}] {got[bad[0]]} != {want[bad[0]]}"
            )

    def blocking(self, call: Call) -> None:
        buf = self.inputs.mine(call, self.rank)
        self.collectives.allreduce(buf, self.comm, call.op, call.algorithm)
        self.verify(call, buf, "allreduce")
        self.calls[call.algorithm] += 1

    def batch(self) -> None:
        progress = ["thread", "test"][self.rng.integers(2)]
        calls = [self.draw() for _ in range(self.rng.integers(1, 5))]
        bufs = [self.inputs.mine(c, self.rank) for c in calls]
        # "auto" resolves per call inside iallreduce too
        reqs = [
            self.collectives.iallreduce(b, self.comm, c.op, c.algorithm, progress=progress) for b, c in zip(bufs, calls)
        ]
        for req, buf, call in zip(reversed(reqs), reversed(bufs), reversed(calls)):  # finish out of order
            if req.wait() is not buf or not req.test():
                self.wrong.append(f"iallreduce {call}: wait() did not return the buffer, or test() is False after it")
            self.verify(call, buf, f"iallreduce({progress})")
            self.calls[f"{call.algorithm} (non-blocking)"] += 1

    def step(self) -> None:
        if self.rng.random() < BATCH_SHARE:
            self.batch()
        else:
            self.blocking(self.draw())

    def caches(self) -> tuple[int, int]:
        """Entries in the communicator's plan cache and its transport's remembered arena views."""
        from collectives.context import context

        ctx = context(self.comm)
        return len(ctx.plans), len(ctx.transport._views)

    def leaks(self) -> dict[str, int]:
        """What should be gone once every request has been waited on and dropped."""
        from collectives import nonblocking
        from collectives.context import context

        gc.collect()
        alive = sum(isinstance(o, nonblocking.AllreduceRequest) for o in gc.get_objects())
        pending_mpi = sum(isinstance(o, self.MPI.Request) and o != self.MPI.REQUEST_NULL for o in gc.get_objects())
        queued = 0 if nonblocking._thread is None else nonblocking._thread.queue.qsize()
        self.comm.Barrier()  # every message of every call has been sent before anyone probes
        private = context(self.comm).comm
        unreceived = int(private.Iprobe(self.MPI.ANY_SOURCE, self.MPI.ANY_TAG))
        return {
            "requests alive": alive,
            "MPI requests pending": pending_mpi,
            "queued in progress thread": queued,
            "unreceived messages": unreceived,
        }

    def run(self) -> int:
        args = self.args
        start = time.perf_counter()
        for algorithm in self.algorithms:  # the largest size first: scratch arenas reach their final size
            self.blocking(self.draw(n=args.max_elements, algorithm=algorithm))
            for n in self.pool:  # the size-keyed caches
                self.blocking(self.draw(n=n, algorithm=algorithm))
        for _ in range(args.warmup):
            self.step()
        self.calls.clear()  # the report counts the measured iterations
        gc.collect()
        base, cached = rss_bytes(), self.caches()
        warm = time.perf_counter()
        peak = base
        for i in range(args.iterations):
            self.iteration = i
            self.step()
            if i % 500 == 0:
                peak = max(peak, rss_bytes())
        elapsed = time.perf_counter() - warm
        gc.collect()
        end = rss_bytes()
        leaks = self.leaks()
        caches = (cached, self.caches())
        return self.report(base, end, max(peak, end), caches, leaks, elapsed, time.perf_counter() - start)

    def report(self, base, end, peak, caches, leaks: dict[str, int], elapsed: float, total: float) -> int:
        comm, args = self.comm, self.args
        rows = comm.gather((base, end, peak, len(self.wrong), self.wrong[:3], leaks), root=0)
        calls = comm.gather(self.calls, root=0)
        failed = 0
        if self.rank == 0:
            mpi = self.MPI.Get_library_version().splitlines()[0].strip()
            print(
                f"soak: {self.size} ranks, {args.iterations} iterations after {args.warmup} warm-up, seed {args.seed}"
            )
            print(f"  MPI: {mpi}")
            print(f"  {sum(calls[0].values())} collectives after warm-up in {elapsed:.1f} s ({total:.1f} s in all)")
            print("  calls: " + ", ".join(f"{k} {v}" for k, v in sorted(calls[0].items())))
            wrong = sum(r[3] for r in rows)
            print(f"  wrong results: {wrong}")
            for rank, row in enumerate(rows):
                for line in row[4]:
                    print(f"    rank {rank}: {line}")
            growth = [(e - b) / b for b, e, _, _, _, _ in rows]
            print(
                "  RSS after warm-up -> end (peak), MiB: "
                + "; ".join(
                    f"rank {r}: {b / 2**20:.1f} -> {e / 2**20:.1f} ({pk / 2**20:.1f})"
                    for r, (b, e, pk, *_) in enumerate(rows)
                )
            )
            print(f"  RSS growth: max {100 * max(growth):+.2f}% (limit {100 * args.max_growth:.0f}%)")
            (plans0, views0), (plans1, views1) = caches
            print(f"  rank 0 caches after warm-up -> end: plans {plans0} -> {plans1}, arena views {views0} -> {views1}")
            total_leaks = Counter()
            for row in rows:
                total_leaks.update(row[5])
            print("  leaks: " + ", ".join(f"{k} {v}" for k, v in total_leaks.items()))
            failed = wrong > 0 or max(growth) >= args.max_growth or sum(total_leaks.values()) > 0
            print(f"soak {'FAILED' if failed else 'passed'}")
        return int(comm.bcast(failed, root=0))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    faulthandler.dump_traceback_later(args.time_limit, exit=True)  # a hang ends with every thread's stack
    soak = Soak(args)
    try:
        return soak.run()
    except BaseException:
        traceback.print_exc()
        where = "in the warm-up" if soak.iteration < 0 else f"at iteration {soak.iteration}"
        print(f"soak: rank {soak.rank} failed {where}; aborting the job", file=sys.stderr, flush=True)
        soak.comm.Abort(1)  # the other ranks would wait for this one forever
        return 1


if __name__ == "__main__":
    sys.exit(main())
