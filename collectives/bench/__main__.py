"""``mpiexec -n P python -m collectives.bench``: the hand-written collectives against MPI's, nccl-tests style.

Honest by default: the library runs as a user gets it (the cross-rank mismatch check on; ``--no-checks``
turns it off and says so), every result is verified on exact-valued inputs (``#wrong``, as nccl-tests'
``-c 1``; any wrong element makes the exit status 1), and the summary compares one choice declared
before the run (``auto`` for allreduce, the API's default for the others, or the ``-a``/``--choice``
one) with MPI's own call. The fastest algorithm per size is shown only as "best after the fact".

Every contender (MPI, ``auto``, each algorithm) has its own time column. Contenders are measured in
the same launch, interleaved: each of ``-r`` rounds times every contender ``-n`` iterations after
``-w`` warm-up calls, in an order rotating from round to round, and ratios to MPI are paired by round
(median, min-max), since the machine drifts. algbw = bytes / time; busbw = algbw * nccl-tests' factor
(allreduce 2(p-1)/p, reduce-scatter and allgather (p-1)/p, broadcast 1); size is the whole buffer.
``--json FILE`` writes every measurement with the machine, load, versions and command;
``python -m collectives.bench.report`` turns such files into BENCHMARKS.md's tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
from mpi4py import MPI

import collectives
from collectives.algorithms import resolve
from collectives.bench.contenders import (
    COLLECTIVES,
    busbw_factor,
    call_for,
    count_wrong,
    default_choice,
    names_for,
    runs_on,
)
from collectives.bench.overlap import measure_overlap
from collectives.bench.runinfo import load_average, run_info
from collectives.ops import NUMERIC_DTYPES, OPS, get_op

MAX_ITERATIONS = 20_000  # per timing; at a few us per call that is about the --time-per-point default
TYPE_NAMES = {"float32": "float", "float64": "double", "int32": "int32", "int64": "int64", "float16": "half"}
ALL_DTYPES = ("float32", "float64", "int32", "int64")  # -d all: the types MPI and numpy both hold natively


def parse_size(text: str) -> int:
    units = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30}
    t = text.strip().upper().replace("IB", "B")
    num = t.rstrip("KMGB")
    unit = t[len(num) :]
    try:
        return int(float(num) * units[unit])
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"cannot read the size {text!r}; expected e.g. 8, 4K, 64M") from None


def args_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m collectives.bench",
        description="Benchmark the hand-written collectives against MPI's own, nccl-tests style (run under mpiexec).",
    )
    ap.add_argument("-b", "--minbytes", type=parse_size, default=8, help="smallest message (default 8)")
    ap.add_argument("-e", "--maxbytes", type=parse_size, default=64 << 20, help="largest message (default 64M)")
    ap.add_argument("-f", "--stepfactor", type=int, default=2, help="size multiplier between rows (default 2)")
    ap.add_argument("-w", "--warmup_iters", type=int, default=5, help="warm-up calls per contender and size (5)")
    ap.add_argument(
        "-n", "--iters", type=int, default=0, help="calls per timing (default 0: enough for --time-per-point)"
    )
    ap.add_argument("-r", "--rounds", type=int, default=5, help="interleaved rounds per size (default 5)")
    ap.add_argument("-d", "--datatype", "--dtype", default="float32", help="numpy dtype or 'all' (default float32)")
    ap.add_argument("-o", "--op", default="sum", help="sum, prod, max, min, avg or 'all' (default sum)")
    ap.add_argument("--collective", default="allreduce", help=f"{', '.join(COLLECTIVES)} or 'all' (default allreduce)")
    ap.add_argument(
        "-a",
        "--algorithms",
        default="all",
        help="comma-separated names (a user's as package.module:function) or 'all' (default: auto and every "
        "algorithm); MPI is always added",
    )
    ap.add_argument("--choice", help="the pre-declared algorithm the summary compares with MPI (default: the "
                    "one -a names, else auto for allreduce and the API's default for the others)")  # fmt: skip
    ap.add_argument("--time-per-point", type=float, default=0.01, help="target seconds per timing (default 0.01)")
    ap.add_argument("-c", "--check", type=int, nargs="?", const=1, default=1, choices=[0, 1],
                    help="verify results (#wrong; default 1)")  # fmt: skip
    ap.add_argument("--no-checks", action="store_true", help="turn the library's cross-rank mismatch check off")
    ap.add_argument("--with-checks", action="store_true", help=argparse.SUPPRESS)  # the old opt-in, now the default
    ap.add_argument("--json", metavar="FILE", help="write all measurements, machine, load, versions and command")
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


def plan(a: argparse.Namespace, ap: argparse.ArgumentParser) -> list[tuple[str, str, np.dtype, list[str], str]]:
    """(collective, op, dtype, contenders, choice) for every table the options ask for; mistakes exit 2."""
    colls = list(COLLECTIVES) if a.collective == "all" else [a.collective]
    if any(c not in COLLECTIVES for c in colls):
        ap.error(f"argument --collective: unknown collective {a.collective!r}; expected one of {COLLECTIVES} or all")
    ops = list(OPS) if a.op == "all" else [a.op]
    try:
        dtypes = [np.dtype(d) for d in (ALL_DTYPES if a.datatype == "all" else [a.datatype])]
        for o in ops:
            get_op(o)
    except (TypeError, ValueError) as e:
        ap.error(f"argument -d/-o: {e}")
    if any(d not in NUMERIC_DTYPES for d in dtypes):
        ap.error(f"argument -d: {a.datatype!r} is not a numeric dtype the collectives support")
    tables = []
    for coll in colls:
        try:
            if a.algorithms == "all":
                names = names_for(coll)
            else:
                names = [resolve(n.strip(), collective=coll) for n in a.algorithms.split(",") if n.strip()]
            choice = a.choice or (names[0] if a.algorithms != "all" else default_choice(coll))
            choice = resolve(choice, collective=coll)
        except ValueError as e:
            ap.error(f"argument -a/--choice: {e}")
        if choice not in names:
            names.insert(0, choice)
        for o in ops if coll in ("allreduce", "reduce_scatter") else ["none"]:
            for d in dtypes:
                if o != "none" and get_op(o).check_dtype(d):
                    continue  # -o all -d all: only the pairs the op is defined on
                tables.append((coll, o, d, ["MPI", *names], choice))
    return tables


def sizes_for(a: argparse.Namespace, itemsize: int) -> list[int]:
    sizes, s = [], max(a.minbytes, itemsize)
    while s <= a.maxbytes:
        sizes.append(s // itemsize * itemsize)
        s *= a.stepfactor
    return sizes


def time_row(a, comm, calls: dict) -> tuple[dict[str, list[float]], int]:
    """Seconds per call of every contender, one per round (the slowest rank's), and the calls per timing."""
    for fn in calls.values():  # warm up (scratch arenas, caches, connections, cached plans)
        for _ in range(max(a.warmup_iters, 1)):
            fn()
    n_iter = a.iters
    if n_iter <= 0:
        # From MPI's warm time over a loop long enough that the ranks' skew leaving the barrier
        # (tens of us) is amortised: a few iterations would add it to every call, pulling ratios toward 1.
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
    contenders = list(calls)
    times: dict[str, list[float]] = {c: [] for c in contenders}
    for r in range(a.rounds):
        for c in contenders[r % len(contenders) :] + contenders[: r % len(contenders)]:
            fn = calls[c]
            comm.Barrier()
            t0 = time.perf_counter()
            for _ in range(n_iter):
                fn()
            times[c].append(comm.allreduce((time.perf_counter() - t0) / n_iter, op=MPI.MAX))
    return times, n_iter


def run_table(a, comm, coll: str, opname: str, dtype: np.dtype, contenders: list[str], choice: str, out) -> dict:
    """Measure and print one table; its records and summary rows."""
    p = comm.Get_size()
    op = get_op("sum" if opname == "none" else opname)
    factor = busbw_factor(coll, p)
    tname = TYPE_NAMES.get(dtype.name, dtype.name)
    out(f"#\n# {coll}, {tname}, op {opname}, {p} ranks; pre-declared choice: {choice}; time (us) per contender:")
    out(f"#{'size':>11} {'count':>11} {'type':>6} {'redop':>5} " + " ".join(f"{c:>{width(c)}}" for c in contenders)
        + f" {'#wrong':>7} {'algbw':>7} {'busbw':>7} {'vs MPI':>7}")  # fmt: skip
    out(f"#{'(B)':>11} {'(elements)':>11} {'':>6} {'':>5} " + " ".join(f"{'':>{width(c)}}" for c in contenders)
        + f" {'':>7} {'(GB/s)':>7} {'(GB/s)':>7} {'(x)':>7}")  # fmt: skip
    records, summary = [], []
    for nbytes in sizes_for(a, dtype.itemsize):
        count = nbytes // dtype.itemsize
        buf = np.zeros(count, dtype)
        calls = {c: call_for(coll, c, buf, comm, op) for c in contenders if runs_on(coll, c, p, count)}
        times, n_iter = time_row(a, comm, calls)
        wrong = {c: count_wrong(coll, c, count, dtype, comm, op) if a.check else None for c in calls}
        med = {c: statistics.median(times[c]) for c in calls}
        if choice not in calls:  # e.g. -a halving on 3 ranks: nothing to compare
            out(f"# {nbytes} B: the choice {choice} cannot run on {p} ranks and {count} elements")
            continue
        for c in calls:
            algbw = nbytes / med[c] / 1e9
            records.append(
                {"collective": coll, "bytes": nbytes, "count": count, "type": dtype.name, "redop": opname,
                 "algorithm": c, "ranks": p, "time_us": med[c] * 1e6, "times_us": [x * 1e6 for x in times[c]],
                 "algbw": algbw, "busbw": algbw * factor, "wrong": wrong[c], "iters": n_iter}
            )  # fmt: skip
        ratios = [m / o for m, o in zip(times["MPI"], times[choice])]  # > 1: the choice is faster
        ours = [c for c in calls if c not in ("MPI", "auto")]
        hindsight = min(ours, key=med.__getitem__) if ours else choice
        total_wrong = sum(w for w in wrong.values() if w) if a.check else None
        algbw = nbytes / med[choice] / 1e9
        out(f"{nbytes:>12} {count:>11} {tname:>6} {opname:>5} "
            + " ".join(f"{med[c] * 1e6:>{width(c)}.2f}" if c in med else f"{'-':>{width(c)}}" for c in contenders)
            + f" {'N/A' if total_wrong is None else total_wrong:>7} {algbw:>7.2f} {algbw * factor:>7.2f}"
            f" {statistics.median(ratios):>7.2f}")  # fmt: skip
        for c in calls:
            if wrong[c]:
                out(f"# WRONG: {c} gave {wrong[c]} wrong element(s) at {nbytes} B")
        summary.append(
            {"collective": coll, "type": dtype.name, "redop": opname, "ranks": p, "bytes": nbytes, "choice": choice,
             "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
             "busbw": algbw * factor, "mpi_busbw": nbytes / med["MPI"] / 1e9 * factor, "hindsight": hindsight,
             "hindsight_ratio": statistics.median(m / o for m, o in zip(times["MPI"], times[hindsight])),
             "wrong": total_wrong}
        )  # fmt: skip
    return {"records": records, "summary": summary}


def width(name: str) -> int:
    return max(9, len(name))


def main(argv: list[str] | None = None) -> int:
    ap = args_parser()
    a = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    rank, p = comm.Get_rank(), comm.Get_size()
    if a.overlap:
        collectives.abort_on_error(comm)
        measure_overlap(comm)
        return 0
    tables = plan(a, ap)  # option mistakes exit here, on every rank alike, with argparse's one line
    collectives.abort_on_error(comm)  # from here an error on one rank ends the launch instead of hanging the others
    if a.no_checks:
        collectives.set_checks(False)
    mpi_lib = MPI.Get_library_version().splitlines()[0].strip()
    info = run_info(mpi_lib) if rank == 0 else {}
    memcpy = memcpy_bandwidth(comm)

    def out(line: str) -> None:
        if rank == 0:
            print(line, flush=True)

    out(f"# collectives.bench: {p} ranks, {mpi_lib}")
    if rank == 0:
        out(f"# machine {info['machine']['host']} ({info['machine']['cpu']}, {info['machine']['cores']} cores), "
            f"load average {info['load_before']} (shared machine: timings move with it)")  # fmt: skip
    out(f"# memcpy bandwidth per rank (all ranks copying): {memcpy / 1e9:.2f} GB/s")
    out(f"# {a.rounds} interleaved rounds per size, {a.warmup_iters} warm-up calls, "
        f"{a.iters or 'auto'} calls per timing; time = median over rounds; library mismatch check "
        f"{'OFF (--no-checks)' if a.no_checks else 'on (the default)'}; result check {'on' if a.check else 'off'}; "
        "vs MPI = MPI's time / the choice's (> 1: faster than MPI)")  # fmt: skip
    results = [run_table(a, comm, *t, out) for t in tables]
    summary = [s for r in results for s in r["summary"]]
    wrong = sum(s["wrong"] or 0 for s in summary)
    for coll, opname, dtype, _, choice in tables:
        rows = [s for s in summary if (s["collective"], s["redop"], s["type"]) == (coll, opname, dtype.name)]
        out(f"#\n# {coll} {dtype.name} {opname}: {choice} (pre-declared) vs MPI, median of paired rounds "
            "(min-max);\n# best after the fact = the fastest at that size, known only after measuring")  # fmt: skip
        out(f"#{'size':>11} {'ratio':>7} {'min':>6} {'max':>6} {'best after the fact':>22} {'its ratio':>9}")
        for s in rows:
            out(f"#{s['bytes']:>11} {s['ratio']:>7.2f} {s['ratio_min']:>6.2f} {s['ratio_max']:>6.2f} "
                f"{s['hindsight']:>22} {s['hindsight_ratio']:>9.2f}")  # fmt: skip
        avg = statistics.fmean(s["busbw"] for s in rows) if rows else 0.0
        out(f"# Avg bus bandwidth    : {avg:.4g} ({choice}; MPI "
            f"{statistics.fmean(s['mpi_busbw'] for s in rows) if rows else 0.0:.4g}) GB/s")  # fmt: skip
    out(f"# Out of bounds values : {wrong} {'FAILED' if wrong else 'OK'}")
    if rank == 0:
        if a.json:
            info["load_after"] = load_average()
            data = {**info, "ranks": p, "memcpy_Bps": memcpy, "mismatch_check": not a.no_checks,
                    "records": [r for res in results for r in res["records"]], "summary": summary}  # fmt: skip
            with open(a.json, "w") as fh:
                json.dump(data, fh, indent=1)
        if a.plot:
            from collectives.bench.plot import plot

            plot([r for res in results for r in res["records"]], p, memcpy, a.plot)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
