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
rank count measured (``by_ranks``), and predictions for p ranks use the nearest one, stretched
by the change in ranks per core (:mod:`collectives.sim.trust`).

The whole measurement is repeated in rounds (``--rounds``); the profile keeps the rounds' median,
the spread of every fitted parameter and a verdict, and the command warns loudly (``--strict``:
refuses) when the rounds disagree too much to trust (:mod:`collectives.sim.trust`).

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

import functools
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
from collectives.sim.trust import (
    MAX_SPREAD,
    MODE_GAP,
    PROBE_BYTES,
    QUIET_ADVICE,
    busy_machine,
    core_share,
    current_cpu,
    curve_at,
    describe_spread,
    launch_problems,
    median_model,
    parameter_spread,
    untrusted,
    usable_cores,
)
from collectives.sim.units import format_size

# Up to 32 MiB: the largest message (and reduction) of a 64 MiB allreduce on two ranks. Beyond the
# last calibrated size the curves extend their last slope, and at 8 MiB that slope is still
# partly the 32 MiB L3's: 16-64 MiB allreduces came out 25-45% under-predicted.
EXCHANGE_SIZES = [0, 256, 4 << 10, 16 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20, 8 << 20]
EXCHANGE_SIZES += [32 << 20]
REDUCE_SIZES = [1 << 10, 16 << 10, 128 << 10, 512 << 10, 2 << 20, 8 << 20, 16 << 20, 32 << 20]
VALIDATE_SIZES = [1 << 10, 16 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]
MPI_ENV = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
# Ranks pinned to cores (Hydra's and Open MPI's --bind-to) while there is a core per rank: unpinned,
# two ranks may share one core for a whole launch, the suspected cause of launches that measured a
# tenth of the bandwidth (collectives.sim.trust). With more ranks than cores, pinning fixes which
# ranks share a core and the OS can no longer balance them (measured slower under load), so "auto"
# leaves those to the OS.
DEFAULT_BIND = "auto"


def under_mpiexec() -> bool:
    """True when this process was started by an MPI launcher (so importing mpi4py joins the job)."""
    return any(k in os.environ for k in MPI_ENV)


def mpiexec_path() -> str:
    local = Path(sys.executable).parent / "mpiexec"
    found = str(local) if local.exists() else shutil.which("mpiexec")
    if found is None:
        raise RuntimeError("mpiexec not found: install MPICH (pip install mpich) or load your site's MPI module")
    return found


@functools.cache
def _open_mpi() -> bool:
    """Whether ``mpiexec`` is Open MPI's (it refuses to bind more ranks than cores unless told it may)."""
    out = subprocess.run([mpiexec_path(), "--version"], capture_output=True, text=True, timeout=30)
    return "Open MPI" in out.stdout + out.stderr or "OpenRTE" in out.stdout + out.stderr


def launch_command(nprocs: int, bind: str = DEFAULT_BIND) -> list[str]:
    """``mpiexec --bind-to bind -n nprocs`` (both Hydra and Open MPI read it); ``bind="none"`` leaves
    placement to the OS, ``"auto"`` binds to cores when there is one per rank and otherwise leaves it.
    More ranks than cores bound are bound round-robin (Open MPI: ``:overload-allowed``)."""
    if bind == "auto":
        bind = "core" if nprocs <= usable_cores() else "none"
    if bind == "none":
        return [mpiexec_path(), "-n", str(nprocs)]
    if _open_mpi() and nprocs > usable_cores() and ":" not in bind:
        bind += ":overload-allowed"
    return [mpiexec_path(), "--bind-to", bind, "-n", str(nprocs)]


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

    cpus: dict[str, int] = {}  # where this rank ran: CPU -> times seen (after each sample)

    def sample(pattern: Any, m: int) -> float:
        """The slowest rank's time per step of ``pattern`` with m-byte messages, one repetition."""
        from mpi4py import MPI

        steps = steps_for(m)
        comm.Barrier()
        t0 = time.perf_counter()
        t.run(pattern(t, buf, None, steps, m))
        elapsed = time.perf_counter() - t0
        cpu = current_cpu()
        if cpu is not None:
            cpus[str(cpu)] = cpus.get(str(cpu), 0) + 1
        return comm.allreduce(elapsed, op=MPI.MAX) / steps

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
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = []
    placement = comm.allgather({"rank": comm.Get_rank(), "affinity": affinity, "cpus": cpus})
    return {
        "ranks": comm.Get_size(),
        "model": model.to_dict(),
        "placement": placement,
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


def calibrate_worker(out: str, quick: bool, rounds: int = 1) -> None:
    """Under mpiexec: measure ``rounds`` times, and rank 0 writes the partial profile to ``out``."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_size() < 2:
        raise SystemExit("calibrate: needs at least 2 MPI ranks (mpiexec -n 2 python -m collectives.sim calibrate)")
    data = {"ranks": comm.Get_size(), "rounds": [measure(comm, quick) for _ in range(rounds)]}
    if comm.Get_rank() == 0:
        data["mpi"] = _mpi_library()
        Path(out).write_text(json.dumps(data))


def merge_profile(
    parts: list[dict[str, Any]],
    max_spread: float = MAX_SPREAD,
    load_before: list[float] | None = None,
    bind: str | None = None,
) -> dict[str, Any]:
    """One profile from measurements at several rank counts, each repeated in rounds.

    Each rank count's model is the median of its rounds (:func:`collectives.sim.trust.median_model`);
    the spread of every fitted parameter is kept, with the verdict (``trusted``, and the reasons in
    ``untrusted``). The smallest rank count is the default model. ``cores`` (usable cores) and each
    rank count's ``core_share`` let predictions for other rank counts account for ranks sharing cores.
    ``load_before`` (the load average before measuring) adds a problem when the machine was busy.
    Parts with the same rank count (one per launch) are pooled; launches that split into a slow
    and a fast mode, or whose ranks shared a core with cores free, are problems too
    (:func:`collectives.sim.trust.launch_problems`). ``bind``: how the launches pinned their ranks.
    """
    parts = sorted(parts, key=lambda d: d["ranks"])
    rounds: dict[int, list[dict[str, Any]]] = {}
    for d in parts:  # a part without rounds is one round
        rounds.setdefault(d["ranks"], []).extend(d.get("rounds", [d]))
    by_ranks = {str(p): median_model([r["model"] for r in rs]) for p, rs in rounds.items()}
    spreads = {str(p): parameter_spread([r["model"] for r in rs]) for p, rs in rounds.items()}
    problems = untrusted(spreads, max_spread)
    cores = usable_cores()
    for p, rs in rounds.items():
        problems += launch_problems(p, rs, cores)
    busy = busy_machine(load_before, cores)
    if busy:
        problems.append(busy)
    first = str(parts[0]["ranks"])
    return {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cores": cores,
        "core_share": {str(p): core_share(p, cores) for p in rounds},
        "load_before": load_before,
        "load": load_average(),
        "python": platform.python_version(),
        "mpi": parts[0].get("mpi", "unknown"),
        "method": "ring sendrecv via MPITransport (alpha, beta); numpy add/copyto on all ranks at once (gamma, delta)",
        "statistic": STATISTIC,
        "bind": bind,
        "rounds": min(len(rs) for rs in rounds.values()),
        "launch_models": {str(p): [r["model"] for r in rs] for p, rs in rounds.items()},
        "launch_bandwidth": {
            str(p): [1 / r["model"]["beta"] if r["model"]["beta"] > 0 else None for r in rs] for p, rs in rounds.items()
        },
        "placement": {str(p): [r.get("placement") for r in rs] for p, rs in rounds.items()},
        "max_spread": max_spread,
        "trusted": not problems,
        "untrusted": problems,
        "spread": spreads,
        "model": by_ranks[first],
        "by_ranks": by_ranks,
        "measurements": {
            str(p): [
                {k: r[k] for k in ("exchange", "exchange_reduce", "exchange_3calls", "reduce", "copy")} for r in rs
            ]
            for p, rs in rounds.items()
        },
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_mpi_module(nprocs: int, args: list[str], timeout: float, bind: str = DEFAULT_BIND) -> None:
    cmd = [*launch_command(nprocs, bind), sys.executable, "-m", "collectives.sim", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def calibrate(
    nprocs: list[int],
    out: str | Path,
    quick: bool = False,
    timeout: float = 600,
    rounds: int = 3,
    max_spread: float = MAX_SPREAD,
    strict: bool = False,
    bind: str = DEFAULT_BIND,
) -> dict[str, Any]:
    """Measure ``rounds`` times at each rank count, each round a launch of its own (``mpiexec
    --bind-to bind``), merge, write ``out``; returns the profile.

    Separate launches, because what varies on a shared machine is the launch (where the ranks
    land), not the rounds inside one. With ``strict``, a profile whose spread exceeds
    ``max_spread`` (or whose launches disagree) is not written and a RuntimeError says why and
    how to measure quietly.
    """
    if rounds < 1:
        raise ValueError(f"calibrate: --rounds must be at least 1, got {rounds}")
    parts = []
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        for launch in range(rounds):  # rank counts interleaved, so a quiet spell is shared by all of them
            for p in nprocs:
                part = Path(tmp) / f"p{p}-{launch}.json"
                args = ["calibrate", "--worker", "--out", str(part), "--rounds", "1"]
                run_mpi_module(p, args + (["--quick"] if quick else []), timeout, bind)
                parts.append(json.loads(part.read_text()))
    profile = merge_profile(parts, max_spread, load_before, bind)
    if strict and not profile["trusted"]:
        raise RuntimeError(
            "calibrate: the measurements disagree too much to trust; no profile written:\n  "
            + "\n  ".join(profile["untrusted"])
            + "\n"
            + QUIET_ADVICE.format(load=profile["load_before"])
        )
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
    if "spread" in profile:
        lines += describe_spread(profile["spread"], profile.get("rounds", 1))
    if "cores" in profile:
        shares = ", ".join(f"p={p}: {s:g}" for p, s in sorted(profile["core_share"].items(), key=lambda kv: int(kv[0])))
        lines.append(
            f"  {profile['cores']} usable core(s): ranks per core {shares}; predictions for other rank counts "
            "scale the nearest measured model by the ratio of ranks per core"
        )
    m = profile["model"]
    lines.append(f"  for collectives.select: COLLECTIVES_MODEL={m['alpha']:.3g},{m['beta']:.3g},{m['gamma']:.3g}")
    if profile.get("untrusted"):
        bar = "!" * 78
        lines += [bar, "WARNING: this calibration is NOT trustworthy: repeated rounds disagree:"]
        lines += [f"  {problem}" for problem in profile["untrusted"]]
        lines += [
            "predictions from it (run, sweep, validate, select) are unreliable.",
            QUIET_ADVICE.format(load=profile.get("load_before") or profile.get("load")),
            bar,
        ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ validating
def probe(comm: Any, repeats: int = 9) -> dict[str, float]:
    """This launch's mode: the plain and the reducing exchange of ``PROBE_BYTES``, timed as
    ``calibrate`` times them (the minimum over ``repeats``), seconds per step."""
    from mpi4py import MPI

    from collectives.mpi_transport import MPITransport

    t = MPITransport(comm)
    buf = np.zeros(PROBE_BYTES, np.uint8)
    out = {}
    for name, pattern in (("exchange", _exchange), ("exchange_reduce", _exchange_reduce)):
        t.run(pattern(t, buf, None, 2, PROBE_BYTES))
        times = []
        for _ in range(repeats):
            comm.Barrier()
            t0 = time.perf_counter()
            t.run(pattern(t, buf, None, 16, PROBE_BYTES))
            times.append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX) / 16)
        out[name] = float(np.min(times))
    return out


def matching_launches(models: list[dict[str, Any]], calibrated: list[float], probed: float) -> list[dict[str, Any]]:
    """The calibration launches in the mode a validation launch ran in: those whose reducing
    exchange of ``PROBE_BYTES`` (``calibrated``, one per launch) is within ``MODE_GAP`` of the
    closest one to the validation launch's (``probed``)."""
    distance = [abs(np.log(c / probed)) for c in calibrated]
    best = min(distance)
    return [m for m, d in zip(models, distance) if d <= best + np.log(MODE_GAP)]


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
    probes = [probe(comm)]
    for _ in range(repeats):  # interleaved: every repetition visits every (algorithm, size)
        for name in algorithms:
            for n in sizes:
                samples[name][n].append(once(name, n))
    probes.append(probe(comm))
    if comm.Get_rank() == 0:
        result: dict[str, Any] = {name: {str(n): summarise(v) for n, v in per.items()} for name, per in samples.items()}
        result["probe"] = probes
        Path(out).write_text(json.dumps(result))


def validate(
    profile_path: str | Path,
    nprocs: list[int],
    algorithms: list[str],
    sizes: list[int],
    repeats: int = 7,
    timeout: float = 900,
    bind: str = DEFAULT_BIND,
) -> dict[str, Any]:
    """Measure for real and predict from the profile; returns rows and per-algorithm median errors.

    For rank counts above the profile's cores, each row also has ``predicted_core_share``: the
    prediction from the models measured with at most one rank per core, stretched by the ranks
    per core (:mod:`collectives.sim.trust`), i.e. what the profile predicts for p without having
    measured p; ``median_abs_error_core_share`` summarises those rows per algorithm.
    """
    from dataclasses import replace

    from collectives.sim.machine import load_profile, machine_from_options
    from collectives.sim.simulate import simulate

    machine = machine_from_options(profile=profile_path)
    data = load_profile(profile_path)
    cores = machine.cores
    one_per_core = {q: m for q, m in machine.by_ranks.items() if cores and q <= cores}
    shared = replace(machine, by_ranks=one_per_core) if one_per_core else None
    load_before = load_average()
    rows = []
    modes: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for p in nprocs:
            part = Path(tmp) / f"v{p}.json"
            args = ["validate", "--worker", "--out", str(part), "--repeats", str(repeats)]
            args += ["--algorithms", ",".join(algorithms), "--sizes", ",".join(str(s) for s in sizes)]
            run_mpi_module(p, args, timeout, bind)
            measured = json.loads(part.read_text())
            model, topology = machine.build(p)
            scaled = shared.build(p) if shared is not None and cores and p > cores else None
            mode = _mode_matched(data, p, measured.get("probe"), Path(tmp) / f"mode{p}.json")
            if mode is not None:
                modes[str(p)] = mode[1]
            for name in algorithms:
                for n in sizes:
                    predicted = simulate(name, p, n, model=model, topology=topology, dtype="float64").time
                    real = measured[name][str(n)]
                    row = {"algorithm": name, "p": p, "bytes": n, "measured": real, "predicted": predicted}
                    if mode is not None:
                        row["predicted_mode"] = simulate(
                            name, p, n, model=mode[0][0], topology=mode[0][1], dtype="float64"
                        ).time
                    if scaled is not None:
                        row["predicted_core_share"] = simulate(
                            name, p, n, model=scaled[0], topology=scaled[1], dtype="float64"
                        ).time
                    rows.append(row)
    report: dict[str, Any] = {
        "rows": rows,
        "median_abs_error": _median_errors(rows, algorithms, "predicted"),
        "cores": cores,
        "bind": bind,
        "load_before": load_before,
        "profile_trusted": data.get("trusted"),
        "profile_untrusted": data.get("untrusted", []),
    }
    if any("predicted_core_share" in r for r in rows):
        report["median_abs_error_core_share"] = _median_errors(rows, algorithms, "predicted_core_share")
    if modes:
        report["modes"] = modes
        report["median_abs_error_mode"] = _median_errors(rows, algorithms, "predicted_mode")
    return report


def _mode_matched(
    profile: dict[str, Any], p: int, probes: list[dict[str, float]] | None, scratch: Path
) -> tuple[Any, dict[str, Any]] | None:
    """(model and topology for p from the calibration launches in the validation launch's mode,
    what was matched), or None when the profile has no launches of p or the launch no probe.

    A machine whose cores move modified data fast in one launch and slowly in the next
    (:func:`collectives.sim.trust.dirty_lines`) is two machines; the probe says which one this
    launch ran on, and the prediction uses the launches calibrated on that one.
    """
    from collectives.sim.machine import machine_from_options

    launches = profile.get("launch_models", {}).get(str(p))
    rounds = profile.get("measurements", {}).get(str(p))
    if not launches or not rounds or not probes or len(launches) != len(rounds):
        return None
    calibrated = [curve_at(r.get("exchange_reduce"), PROBE_BYTES) for r in rounds]
    if any(c is None or c <= 0 for c in calibrated):
        return None
    probed = float(np.median([pr["exchange_reduce"] for pr in probes]))
    chosen = matching_launches(launches, calibrated, probed)
    used = [i + 1 for i, m in enumerate(launches) if any(m is c for c in chosen)]
    matched = dict(profile, by_ranks={**profile["by_ranks"], str(p): median_model(chosen)})
    scratch.write_text(json.dumps(matched))
    ends = [pr["exchange_reduce"] for pr in probes]
    info = {"probe_s": probes, "calibrated_s": calibrated, "launches_used": used}
    info["switched"] = max(ends) / min(ends) > MODE_GAP  # the mode changed while validating
    return machine_from_options(profile=scratch).build(p), info


def _median_errors(rows: list[dict[str, Any]], algorithms: list[str], key: str) -> dict[str, float]:
    """Median |predicted - measured| / measured per algorithm, over the rows that have ``key``."""
    errors = {}
    for name in algorithms:
        errs = [abs(r[key] - r["measured"]) / r["measured"] for r in rows if r["algorithm"] == name and key in r]
        if errs:
            errors[name] = float(np.median(errs))
    return errors


def validation_table(report: dict[str, Any]) -> str:
    shared = "median_abs_error_core_share" in report
    head = f"{'algorithm':<20}{'p':>3}{'size':>8}{'measured':>12}{'predicted':>12}{'error':>8}"
    lines = [head + (f"{'core-shared':>13}{'error':>8}" if shared else "")]
    for r in report["rows"]:
        err = (r["predicted"] - r["measured"]) / r["measured"]
        line = (
            f"{r['algorithm']:<20}{r['p']:>3}{format_size(r['bytes']):>8}{r['measured'] * 1e6:>10.1f}us"
            f"{r['predicted'] * 1e6:>10.1f}us{err:>+8.0%}"
        )
        if "predicted_core_share" in r:
            c = r["predicted_core_share"]
            line += f"{c * 1e6:>11.1f}us{(c - r['measured']) / r['measured']:>+8.0%}"
        lines.append(line)
    lines.append("median absolute error per algorithm:")
    for name, e in report["median_abs_error"].items():
        lines.append(f"  {name:<20}{e:>6.1%}{'  (target <= 20%)' if e > 0.2 else ''}")
    if shared:
        lines.append(
            f"with more ranks than the profile's {report['cores']} core(s), predicted from the one-rank-per-core "
            "models stretched by ranks per core (median absolute error, those rank counts only):"
        )
        for name, e in report["median_abs_error_core_share"].items():
            lines.append(f"  {name:<20}{e:>6.1%}{'  (target <= 30%)' if e > 0.3 else ''}")
    if "median_abs_error_mode" in report:
        lines.append(
            "predicted from the calibration launches in the mode each validation launch ran in (its probe of a "
            f"{PROBE_BYTES >> 10} KiB reducing exchange against theirs; median absolute error):"
        )
        for name, e in report["median_abs_error_mode"].items():
            lines.append(f"  {name:<20}{e:>6.1%}{'  (target <= 20%)' if e > 0.2 else ''}")
        for p, mode in sorted(report["modes"].items(), key=lambda kv: int(kv[0])):
            probe_us = ", ".join(f"{pr['exchange_reduce'] * 1e6:.0f}" for pr in mode["probe_s"])
            calibrated_us = ", ".join(f"{c * 1e6:.0f}" for c in mode["calibrated_s"])
            switched = "; the mode changed during the launch" if mode["switched"] else ""
            lines.append(
                f"  p={p}: probe {probe_us} us (start, end) against the launches' {calibrated_us} us: "
                f"used launch(es) {', '.join(map(str, mode['launches_used']))}{switched}"
            )
    if report.get("profile_untrusted"):
        lines.append("WARNING: the profile's calibration rounds disagreed (not trustworthy); errors above mean little:")
        lines += [f"  {problem}" for problem in report["profile_untrusted"]]
    return "\n".join(lines)
