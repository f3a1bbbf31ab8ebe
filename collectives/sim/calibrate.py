"""Measure this machine's alpha, beta, gamma (``calibrate``) and check predictions against reality (``validate``).

``calibrate`` times, under MPI and through the project's own transport (so Python's per-step
cost is part of alpha, as it is for every algorithm here):

* alpha and beta: every rank exchanges m bytes with its ring neighbours (``t.sendrecv``) and adds
  them into the buffer it sends next, as reducing algorithms do (freshly written data costs more
  to move between cores than a cached buffer), for sizes from 0 to 8 MiB; the message time is
  the step less the two calls and the reduction (measured apart); a least-squares fit of
  alpha + m * beta, weighted by relative error so small and large messages count alike;
* the cost of one transport call: the same exchange written with three calls per step
  (``isend``, ``irecv``, ``wait``) instead of one; half the difference;
* gamma and delta: every rank at once reduces (``np.add``) and copies float64 arrays of 1 KiB
  to 16 MiB; the fitted slope per byte (all ranks at once, because that is how a collective
  reduces, and it is what oversubscribed ranks on few cores really get).

The profile keeps the measured curves too: predictions read a message's time, a reduction's and
a copy's off them (linear between measured sizes) and charge the call cost per transport call,
which captures what a straight line cannot on a real machine (protocol switches between message
sizes, caches); alpha, beta and gamma are the straight-line summary.

Both depend on how many processes share the machine, so the profile records one model per
rank count measured (``by_ranks``), and predictions for p ranks use the nearest one.

Every timing is repeated, the repetitions interleaved over all cases (a burst of load from other
processes then spoils one sample of each case, not every sample of one), and summarised by its
minimum (the repetition least disturbed) unless COLLECTIVES_SIM_STATISTIC=median.

``validate`` runs every algorithm for real at p = 2, 3, 4 over a range of sizes, interleaving
algorithms and sizes within each repetition (the machine drifts), timing each sample as a batch
of back-to-back calls as nccl-tests does (so the skew of leaving a barrier does not count), and
compares the measured time with the simulator's prediction from the profile; it reports the
median absolute error per algorithm.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from collectives.sim.cost_model import CostModel, curve_time
from collectives.sim.units import format_size

EXCHANGE_SIZES = [0, 256, 4 << 10, 16 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20, 8 << 20]
REDUCE_SIZES = [1 << 10, 16 << 10, 128 << 10, 512 << 10, 2 << 20, 8 << 20, 16 << 20]
VALIDATE_SIZES = [1 << 10, 16 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20]
MPI_ENV = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


def under_mpiexec() -> bool:
    """True when this process was started by an MPI launcher (so importing mpi4py joins the job)."""
    return any(k in os.environ for k in MPI_ENV)


def mpiexec_path() -> str:
    local = Path(sys.executable).parent / "mpiexec"
    found = str(local) if local.exists() else shutil.which("mpiexec")
    if found is None:
        raise RuntimeError("mpiexec not found: install MPICH (pip install mpich) or load your site's MPI module")
    return found


def fit_line(xs: list[float], ys: list[float], relative: bool = True) -> tuple[float, float]:
    """(intercept, slope) of y = a + b*x minimising relative (else absolute) error; both clipped at zero."""
    x = np.asarray(xs, float)
    y = np.asarray(ys, float)
    w = 1.0 / np.maximum(y, 1e-12) if relative else np.ones_like(y)
    design = np.stack([np.ones_like(x), x], axis=1) * w[:, None]
    (a, b), *_ = np.linalg.lstsq(design, y * w, rcond=None)
    return max(float(a), 0.0), max(float(b), 0.0)


# ------------------------------------------------------------------------------- measuring
def _exchange(t: Any, buf: np.ndarray, op: Any, steps: int, m: int) -> Any:
    """Ring neighbours swap m bytes per step with one call (``t.sendrecv``)."""
    p, r = t.size, t.rank
    incoming = t.scratch(m, np.uint8)
    for s in range(steps):
        yield t.sendrecv(buf[:m], (r + 1) % p, incoming, (r - 1) % p, s)


def _exchange_reduce(t: Any, buf: np.ndarray, op: Any, steps: int, m: int) -> Any:
    """As a reducing algorithm does: swap m bytes, then add them into the buffer that is sent next.

    The data sent was just written by this core, as in every reduce-scatter; moving freshly
    written data between cores costs more than re-sending a cached buffer, so this, not the bare
    exchange, is what the message times are taken from.
    """
    from collectives.ops import get_op

    p, r = t.size, t.rank
    add = get_op("sum")
    data = buf[:m].view(np.float64)
    incoming = t.scratch(m // 8, np.float64)
    for s in range(steps):
        yield t.sendrecv(data, (r + 1) % p, incoming, (r - 1) % p, s)
        t.reduce(add, data, incoming)


def _exchange_3calls(t: Any, buf: np.ndarray, op: Any, steps: int, m: int) -> Any:
    """The same messages with three calls per step (isend, irecv, wait): the difference is two calls' cost."""
    p, r = t.size, t.rank
    incoming = t.scratch(m, np.uint8)
    for s in range(steps):
        send = t.isend(buf[:m], (r + 1) % p, s)
        yield t.wait(send, t.irecv(incoming, (r - 1) % p, s))


STATISTICS = {"min": np.min, "median": np.median}
STATISTIC = os.environ.get("COLLECTIVES_SIM_STATISTIC", "min")


def summarise(samples: list[float], statistic: str | None = None) -> float:
    """One number from repeated timings: the minimum by default, the sample least disturbed by other
    processes on a shared machine; ``median`` (or COLLECTIVES_SIM_STATISTIC=median) on a quiet one."""
    return float(STATISTICS[statistic or STATISTIC](samples))


def measure(comm: Any, quick: bool = False) -> dict[str, Any]:
    """Run on every rank; returns (on every rank) the fitted model and the raw measurements."""
    from collectives.mpi_transport import MPITransport

    repeats = 5 if quick else 21
    buf = np.zeros(max(EXCHANGE_SIZES), np.uint8)  # zeros: sums never overflow (numpy warnings are slow)
    t = MPITransport(comm)

    def steps_for(m: int) -> int:
        return 4 if m >= 2 << 20 else 16 if m >= 64 << 10 else 64

    def sample(pattern: Any, m: int) -> float:
        """The slowest rank's time per step of ``pattern`` with m-byte messages, one repetition."""
        from mpi4py import MPI

        steps = steps_for(m)
        comm.Barrier()
        t0 = time.perf_counter()
        t.run(pattern(t, buf, None, steps, m))
        return comm.allreduce(time.perf_counter() - t0, op=MPI.MAX) / steps

    cases = [(pattern, m) for m in EXCHANGE_SIZES for pattern in (_exchange, _exchange_reduce)]
    cases += [(_exchange_3calls, m) for m in (0, 256, 4 << 10)]
    for pattern, m in cases:  # warm-up: connections, scratch arena, caches
        t.run(pattern(t, buf, None, 2, m))
    # Interleaved: every repetition visits every case, so a burst of load from other processes
    # spoils one sample of each case rather than every sample of one.
    samples: dict[tuple[Any, int], list[float]] = {case: [] for case in cases}
    for _ in range(repeats):
        for case in cases:
            samples[case].append(sample(*case))
    exchange = [(m, summarise(samples[(_exchange, m)])) for m in EXCHANGE_SIZES]
    exchange_reduce = [(m, summarise(samples[(_exchange_reduce, m)])) for m in EXCHANGE_SIZES]
    three = [(m, summarise(samples[(_exchange_3calls, m)])) for m in (0, 256, 4 << 10)]
    # Two extra calls per step: what one transport call costs the CPU (Python, mpi4py, MPI's entry).
    call = max(0.0, float(np.median([(t3 - t1) / 2 for (_, t1), (_, t3) in zip(exchange, three)])))

    arrays = {n: (np.zeros(n // 8), np.zeros(n // 8)) for n in REDUCE_SIZES}  # zeros: no overflow

    def local(fn: Any, n: int) -> float:
        """Seconds per call of ``fn`` on n-byte arrays, all ranks at once (slowest rank), one repetition."""
        from mpi4py import MPI

        a, b = arrays[n]
        inner = max(1, (4 << 20) // n)
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(inner):
            fn(a, b)
        return comm.allreduce(time.perf_counter() - t0, op=MPI.MAX) / inner

    def add(a: np.ndarray, b: np.ndarray) -> None:
        np.add(a, b, out=a)

    local_cases = [(fn, n) for n in REDUCE_SIZES for fn in (add, np.copyto)]
    for fn, n in local_cases:
        local(fn, n)
    local_samples: dict[tuple[Any, int], list[float]] = {case: [] for case in local_cases}
    for _ in range(repeats):
        for case in local_cases:
            local_samples[case].append(local(*case))
    reduce_t = [(n, summarise(local_samples[(add, n)])) for n in REDUCE_SIZES]
    copy_t = [(n, summarise(local_samples[(np.copyto, n)])) for n in REDUCE_SIZES]
    # Absolute error: the slope of the large, memory-bound sizes, which is where gamma matters.
    _, gamma = fit_line([n for n, _ in reduce_t], [s for _, s in reduce_t], relative=False)
    _, delta = fit_line([n for n, _ in copy_t], [s for _, s in copy_t], relative=False)
    # A step of the reducing exchange is two calls (sendrecv, reduce), one message and one reduction
    # of m bytes: the message takes the rest.
    reduce_curve = tuple(reduce_t)
    message = [(m, max(s - 2 * call - (curve_time(reduce_curve, m) if m else 0.0), 1e-9)) for m, s in exchange_reduce]
    alpha, beta = fit_line([m for m, _ in message], [s + call for m, s in message])
    model = CostModel.textbook(alpha, beta, gamma, delta).replace(
        call_overhead=call,
        message_curve=tuple(message),
        reduce_curve=reduce_curve,
        copy_curve=tuple(copy_t),
        name="calibrated",
    )
    return {
        "ranks": comm.Get_size(),
        "model": model.to_dict(),
        "exchange": exchange,
        "exchange_reduce": exchange_reduce,
        "exchange_3calls": three,
        "reduce": reduce_t,
        "copy": copy_t,
    }


def _mpi_library() -> str:
    try:
        from mpi4py import MPI

        return MPI.Get_library_version().strip().splitlines()[0]
    except Exception:  # pragma: no cover - informational only
        return "unknown"


def calibrate_worker(out: str, quick: bool) -> None:
    """Under mpiexec: measure, and rank 0 writes the partial profile to ``out``."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_size() < 2:
        raise SystemExit("calibrate: needs at least 2 MPI ranks (mpiexec -n 2 python -m collectives.sim calibrate)")
    data = measure(comm, quick)
    if comm.Get_rank() == 0:
        data["mpi"] = _mpi_library()
        Path(out).write_text(json.dumps(data))


def merge_profile(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One profile from measurements at several rank counts; the smallest rank count is the default model."""
    parts = sorted(parts, key=lambda d: d["ranks"])
    return {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "mpi": parts[0].get("mpi", "unknown"),
        "method": "ring sendrecv via MPITransport (alpha, beta); numpy add/copyto on all ranks at once (gamma, delta)",
        "statistic": STATISTIC,
        "model": parts[0]["model"],
        "by_ranks": {str(d["ranks"]): d["model"] for d in parts},
        "measurements": {
            str(d["ranks"]): {k: d[k] for k in ("exchange", "exchange_reduce", "exchange_3calls", "reduce", "copy")}
            for d in parts
        },
    }


def run_mpi_module(nprocs: int, args: list[str], timeout: float) -> None:
    cmd = [mpiexec_path(), "-n", str(nprocs), sys.executable, "-m", "collectives.sim", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def calibrate(nprocs: list[int], out: str | Path, quick: bool = False, timeout: float = 600) -> dict[str, Any]:
    """Measure at each rank count (launching mpiexec), merge, write ``out``; returns the profile."""
    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for p in nprocs:
            part = Path(tmp) / f"p{p}.json"
            args = ["calibrate", "--worker", "--out", str(part)] + (["--quick"] if quick else [])
            run_mpi_module(p, args, timeout)
            parts.append(json.loads(part.read_text()))
    profile = merge_profile(parts)
    Path(out).write_text(json.dumps(profile, indent=1))
    return profile


def describe_profile(profile: dict[str, Any]) -> str:
    lines = [f"profile of {profile.get('host', '?')} ({profile.get('cpus', '?')} cpus), {profile.get('mpi', '')}"]
    for p, m in sorted(profile["by_ranks"].items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"  p={p}: alpha {m['alpha'] * 1e6:.2f} us, 1/beta {1 / max(m['beta'], 1e-30) / 1e9:.2f} GB/s, "
            f"1/gamma {1 / max(m['gamma'], 1e-30) / 1e9:.2f} GB/s, 1/delta {1 / max(m['delta'], 1e-30) / 1e9:.2f} GB/s,"
            f" {m.get('call_overhead', 0) * 1e6:.2f} us per transport call"
        )
    m = profile["model"]
    lines.append(f"  for collectives.select: COLLECTIVES_MODEL={m['alpha']:.3g},{m['beta']:.3g},{m['gamma']:.3g}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ validating
def validate_worker(out: str, algorithms: list[str], sizes: list[int], repeats: int) -> None:
    """Under mpiexec: time each algorithm at each size for real; rank 0 writes {name: {size: seconds}}."""
    from mpi4py import MPI

    from collectives.algorithms import ALGORITHMS
    from collectives.mpi_transport import MPITransport
    from collectives.ops import get_op

    comm = MPI.COMM_WORLD
    op = get_op("sum")
    bufs = {n: np.zeros(n // 8) for n in sizes}  # zeros: repeated sums never overflow (numpy warns slowly)
    samples: dict[str, dict[int, list[float]]] = {a: {n: [] for n in sizes} for a in algorithms}
    iters: dict[tuple[str, int], int] = {}

    def batch(name: str, n: int, count: int) -> float:
        """Seconds per allreduce over ``count`` back to back (as nccl-tests times), slowest rank."""
        t = MPITransport(comm)
        run = ALGORITHMS[name].run
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(count):
            t.run(run(t, bufs[n], op))
        return comm.allreduce(time.perf_counter() - t0, op=MPI.MAX) / count

    def once(name: str, n: int) -> float:
        return batch(name, n, iters[(name, n)])

    for name in algorithms:  # warm-up, and enough iterations per sample to last about 2 ms
        for n in sizes:
            first = batch(name, n, 2)
            iters[(name, n)] = int(comm.bcast(min(50, max(1, round(2e-3 / max(first, 1e-7)))), root=0))
    for _ in range(repeats):  # interleaved: every repetition visits every (algorithm, size)
        for name in algorithms:
            for n in sizes:
                samples[name][n].append(once(name, n))
    if comm.Get_rank() == 0:
        result = {name: {str(n): summarise(v) for n, v in per.items()} for name, per in samples.items()}
        Path(out).write_text(json.dumps(result))


def validate(
    profile_path: str | Path,
    nprocs: list[int],
    algorithms: list[str],
    sizes: list[int],
    repeats: int = 7,
    timeout: float = 900,
) -> dict[str, Any]:
    """Measure for real and predict from the profile; returns rows and per-algorithm median errors."""
    from collectives.sim.machine import machine_from_options
    from collectives.sim.simulate import simulate

    machine = machine_from_options(profile=profile_path)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for p in nprocs:
            part = Path(tmp) / f"v{p}.json"
            args = ["validate", "--worker", "--out", str(part), "--repeats", str(repeats)]
            args += ["--algorithms", ",".join(algorithms), "--sizes", ",".join(str(s) for s in sizes)]
            run_mpi_module(p, args, timeout)
            measured = json.loads(part.read_text())
            model, topology = machine.build(p)
            for name in algorithms:
                for n in sizes:
                    predicted = simulate(name, p, n, model=model, topology=topology, dtype="float64").time
                    real = measured[name][str(n)]
                    rows.append({"algorithm": name, "p": p, "bytes": n, "measured": real, "predicted": predicted})
    errors = {}
    for name in algorithms:
        errs = [abs(r["predicted"] - r["measured"]) / r["measured"] for r in rows if r["algorithm"] == name]
        errors[name] = float(np.median(errs))
    return {"rows": rows, "median_abs_error": errors}


def validation_table(report: dict[str, Any]) -> str:
    lines = [f"{'algorithm':<20}{'p':>3}{'size':>8}{'measured':>12}{'predicted':>12}{'error':>8}"]
    for r in report["rows"]:
        err = (r["predicted"] - r["measured"]) / r["measured"]
        lines.append(
            f"{r['algorithm']:<20}{r['p']:>3}{format_size(r['bytes']):>8}{r['measured'] * 1e6:>10.1f}us"
            f"{r['predicted'] * 1e6:>10.1f}us{err:>+8.0%}"
        )
    lines.append("median absolute error per algorithm:")
    for name, e in report["median_abs_error"].items():
        lines.append(f"  {name:<20}{e:>6.1%}{'  (target <= 20%)' if e > 0.2 else ''}")
    return "\n".join(lines)
