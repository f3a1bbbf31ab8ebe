"""``mpiexec -n P python -m collectives.bench``: allreduce time and bandwidth, ours against MPI's.

Prints a table in nccl-tests' format (size, count, type, redop, algorithm, time, algbw, busbw,
#wrong) for every algorithm and for MPI's own ``Allreduce`` (algorithm "MPI"), then, per size,
the best hand-written algorithm's busbw as a ratio to MPI's. Candidates and MPI are measured in
the same run, interleaved: each of ``--rounds`` rounds times every contender once, in an order
that rotates from round to round, and ratios are paired by round (median, with min-max), since
this machine drifts. algbw = bytes / time; busbw = algbw * 2(p-1)/p, comparable across rank
counts (nccl-tests' definition). The memory-copy bandwidth of one rank, measured while all ranks
copy at once, is printed as the physical limit.

The cross-rank mismatch check is off during timing (``--with-checks`` keeps it on);
``--check`` verifies every contender on exact-valued inputs (#wrong counts wrong elements);
``--json FILE`` writes every measurement; ``--plot FILE`` draws busbw against size;
``--overlap`` measures how much of an ``iallreduce`` each progress mode hides behind compute.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np
from mpi4py import MPI

import collectives
from collectives.algorithms import ALGORITHMS, algorithm_names, resolve
from collectives.bench.overlap import measure_overlap

MAX_ITERATIONS = 20_000  # per timing; at a few us per call that is about the --time-per-point default
TYPE_NAMES = {"float32": "float", "float64": "double", "int32": "int32", "int64": "int64", "float16": "half"}


def parse_size(text: str) -> int:
    units = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30}
    t = text.strip().upper().replace("IB", "B")
    num = t.rstrip("KMGB")
    unit = t[len(num) :]
    if unit not in units or not num:
        raise argparse.ArgumentTypeError(f"cannot read the size {text!r}; expected e.g. 8, 4K, 64M")
    return int(float(num) * units[unit])


def args_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m collectives.bench",
        description="Allreduce benchmark of the hand-written algorithms against MPI's Allreduce (run under mpiexec).",
    )
    ap.add_argument("-b", "--minbytes", type=parse_size, default=8, help="smallest message (default 8)")
    ap.add_argument("-e", "--maxbytes", type=parse_size, default=64 << 20, help="largest message (default 64M)")
    ap.add_argument("-f", "--stepfactor", type=int, default=2, help="size multiplier between rows (default 2)")
    ap.add_argument("-d", "--dtype", default="float32", help="numpy dtype (default float32)")
    ap.add_argument("-o", "--op", default="sum", help="sum, prod, max, min or avg (default sum)")
    ap.add_argument(
        "-a",
        "--algorithms",
        default="all",
        help="comma-separated names or 'all' (default); MPI is always added. Names: " + ", ".join(algorithm_names()),
    )
    ap.add_argument("-r", "--rounds", type=int, default=5, help="interleaved rounds per size (default 5)")
    ap.add_argument("--time-per-point", type=float, default=0.01, help="target seconds per timing (default 0.01)")
    ap.add_argument("--check", action="store_true", help="verify results on exact-valued inputs (#wrong column)")
    ap.add_argument("--with-checks", action="store_true", help="keep the cross-rank mismatch check on while timing")
    ap.add_argument("--json", metavar="FILE", help="write all measurements as JSON")
    ap.add_argument("--plot", metavar="FILE", help="plot busbw against size (needs matplotlib)")
    ap.add_argument("--overlap", action="store_true", help="measure iallreduce overlap per progress mode and exit")
    return ap


def memcpy_bandwidth(comm: MPI.Intracomm, nbytes: int = 64 << 20) -> float:
    """Bytes/s one rank copies with numpy while every rank copies at once (read + write counted once)."""
    src = np.ones(nbytes, np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = 0.0
    for _ in range(5):
        comm.Barrier()
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = max(best, nbytes / (time.perf_counter() - t0))
    return comm.allreduce(best, op=MPI.MIN)


def exact_inputs(rank: int, n: int, dtype: np.dtype) -> np.ndarray:
    return ((np.arange(n) + rank) % 5).astype(dtype)


def main(argv: list[str] | None = None) -> int:
    a = args_parser().parse_args(argv)
    comm = MPI.COMM_WORLD
    rank, p = comm.Get_rank(), comm.Get_size()
    dtype = np.dtype(a.dtype)
    op = collectives.ops.get_op(a.op)
    if why := op.check_dtype(dtype):
        raise SystemExit(f"collectives.bench: {why}")
    mpi_op = {"sum": MPI.SUM, "prod": MPI.PROD, "max": MPI.MAX, "min": MPI.MIN, "avg": MPI.SUM}[op.name]
    try:  # the registry's resolve is the one place names are checked
        names = [resolve(n) for n in a.algorithms.split(",")] if a.algorithms != "all" else sorted(ALGORITHMS)
    except ValueError as e:
        raise SystemExit(f"collectives.bench: {e}") from None
    if a.overlap:
        measure_overlap(comm)
        return 0
    collectives.set_checks(a.with_checks)
    contenders = ["MPI", *names]
    memcpy = memcpy_bandwidth(comm)
    sizes = []
    s = max(a.minbytes, dtype.itemsize)
    while s <= a.maxbytes:
        sizes.append(s // dtype.itemsize * dtype.itemsize)
        s *= a.stepfactor
    if rank == 0:
        print(f"# collectives.bench: {p} ranks, {MPI.Get_library_version().splitlines()[0].strip()}")
        print(f"# memcpy bandwidth per rank (all ranks copying): {memcpy / 1e9:.2f} GB/s")
        print(f"# {a.rounds} interleaved rounds per size; time = median over rounds; mismatch check "
              f"{'on' if a.with_checks else 'off'}")  # fmt: skip
        print(f"#{'size':>11} {'count':>12} {'type':>7} {'redop':>6} {'algorithm':>18} {'time':>10} "
              f"{'algbw':>7} {'busbw':>7} {'#wrong':>7}")  # fmt: skip
        print(f"#{'(B)':>11} {'(elements)':>12} {'':>7} {'':>6} {'':>18} {'(us)':>10} {'(GB/s)':>7} {'(GB/s)':>7}")
    records = []
    summary = []
    for nbytes in sizes:
        count = nbytes // dtype.itemsize
        buf = np.zeros(count, dtype)
        iters = {}
        times: dict[str, list[float]] = {c: [] for c in contenders}
        # Each contender is one bound call, MPI's straight into mpi4py: the timing loop adds the
        # same few tens of nanoseconds to both, not a Python frame that would flatter the slower.
        calls = {c: call_for(c, buf, comm, mpi_op, op.name) for c in contenders}
        for c in contenders:  # warm up (scratch arenas, caches, connections, cached plans)
            calls[c]()
            calls[c]()
        # The iteration count, the same for every contender, from MPI's warm time over a loop long
        # enough that the ranks' skew leaving the barrier (tens of us) is amortised: a timing
        # of a few iterations would add that skew to every call and pull all ratios toward 1.
        n_iter = 1
        while True:
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(n_iter):
                calls["MPI"]()
            elapsed = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
            if elapsed >= 1e-3 or n_iter >= MAX_ITERATIONS:
                break
            n_iter *= 4
        n_iter = comm.bcast(int(min(MAX_ITERATIONS, max(2, a.time_per_point / (elapsed / n_iter)))))
        for r in range(a.rounds):
            order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
            for c in order:
                fn = calls[c]
                comm.Barrier()
                t0 = time.perf_counter()
                for _ in range(n_iter):
                    fn()
                elapsed = (time.perf_counter() - t0) / n_iter
                times[c].append(comm.allreduce(elapsed, op=MPI.MAX))
        iters[nbytes] = n_iter
        row = {}
        for c in contenders:
            t = statistics.median(times[c])
            wrong = count_wrong(c, count, dtype, comm, mpi_op, op) if a.check else -1
            algbw = nbytes / t / 1e9
            busbw = algbw * 2 * (p - 1) / p
            row[c] = (t, busbw)
            records.append(
                {"bytes": nbytes, "count": count, "type": dtype.name, "redop": op.name, "algorithm": c, "ranks": p,
                 "time_us": t * 1e6, "times_us": [x * 1e6 for x in times[c]], "algbw": algbw, "busbw": busbw,
                 "wrong": wrong, "iters": n_iter}
            )  # fmt: skip
            if rank == 0:
                w = str(wrong) if a.check else "N/A"
                print(f"{nbytes:>12} {count:>12} {TYPE_NAMES.get(dtype.name, dtype.name):>7} {op.name:>6} {c:>18} "
                      f"{t * 1e6:>10.2f} {algbw:>7.2f} {busbw:>7.2f} {w:>7}")  # fmt: skip
        ours = [c for c in contenders if c != "MPI"]
        best = min(ours, key=lambda c: row[c][0])
        ratios = [m / o for m, o in zip(times["MPI"], times[best])]  # >1: ours faster (busbw ratio)
        summary.append((nbytes, best, statistics.median(ratios), min(ratios), max(ratios), row[best][1]))
    if rank == 0:
        print("#\n# best hand-written algorithm per size: busbw ratio to MPI's Allreduce (median of paired rounds,"
              " min-max), and busbw as a fraction of the memcpy bandwidth")  # fmt: skip
        print(f"#{'size':>11} {'best':>18} {'ratio':>7} {'min':>6} {'max':>6} {'busbw/memcpy':>13}")
        for nbytes, best, med, lo, hi, busbw in summary:
            print(f"#{nbytes:>11} {best:>18} {med:>7.2f} {lo:>6.2f} {hi:>6.2f} {busbw * 1e9 / memcpy:>13.2f}")
        if a.json:
            with open(a.json, "w") as fh:
                json.dump({"ranks": p, "memcpy_Bps": memcpy, "mpi": MPI.Get_library_version().splitlines()[0],
                           "records": records, "summary": summary}, fh, indent=1)  # fmt: skip
        if a.plot:
            plot(records, p, memcpy, a.plot)
    return 0


def call_for(c: str, buf: np.ndarray, comm: MPI.Intracomm, mpi_op: MPI.Op, op: str) -> Callable[[], None]:
    """One allreduce of ``buf`` by contender ``c`` as a call without arguments."""
    if c == "MPI":
        return partial(comm.Allreduce, MPI.IN_PLACE, buf, mpi_op)
    return partial(collectives.allreduce, buf, comm, op, c)


def count_wrong(c: str, count: int, dtype: np.dtype, comm: MPI.Intracomm, mpi_op: MPI.Op, op) -> int:
    p, rank = comm.Get_size(), comm.Get_rank()
    buf = exact_inputs(rank, count, dtype)
    expected = op.reference([exact_inputs(r, count, dtype) for r in range(p)]) if count <= 1 << 22 else None
    call_for(c, buf, comm, mpi_op, op.name)()
    if c == "MPI" and op.average:
        op.finalize(buf, p)
    if expected is None:  # large: the reference by formula (sum of (i + r) % 5 over r)
        expected = sum(exact_inputs(r, count, dtype) for r in range(p)).astype(dtype)
        op.finalize(expected, 1)
    wrong = int(np.count_nonzero(buf != expected))
    return comm.allreduce(wrong)


def plot(records: list[dict], p: int, memcpy: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for c in sorted({r["algorithm"] for r in records}):
        pts = [(r["bytes"], r["busbw"]) for r in records if r["algorithm"] == c]
        ax.plot(
            *zip(*pts), marker="o", ms=3, lw=2.5 if c == "MPI" else 1.2, label=c, color="black" if c == "MPI" else None
        )
    ax.axhline(memcpy / 1e9, ls="--", color="grey", label="memcpy (1 rank)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("busbw (GB/s)")
    ax.set_title(f"allreduce busbw on {p} ranks: hand-written algorithms vs MPI")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
