"""Whether a calibration can be trusted, and what ranks sharing cores do to it.

``calibrate`` measures the machine several times (rounds) and fits alpha, beta, gamma, delta and
the per-call cost each time. On a quiet machine the rounds agree within a few percent; on a
shared one they do not (1/beta = 16 GB/s and 1.4 GB/s minutes apart were seen), and a profile
built from one round then predicts garbage. So the profile keeps the median of the rounds, the
spread of every fitted parameter ((max - min) / median), and a verdict: above ``MAX_SPREAD`` the
numbers are not to be trusted, the command says so loudly (or refuses, with ``--strict``) and
tells how to measure quietly.

Ranks sharing cores: with more MPI ranks than usable cores, ranks take turns on the cores, and
MPICH's ranks keep polling while they wait, so every rank runs about cores/p of the time and
every cost it pays (messages through shared memory are CPU copies too) stretches by
``core_share(p) = max(1, p / cores)``. A model measured at q ranks predicts p ranks after
scaling by ``core_share(p) / core_share(q)`` (:meth:`collectives.sim.machine.Machine.model_for`),
instead of pretending every rank had a core of its own.

Launches, not only rounds: at p = 2 on this 2-core machine the bandwidth between the two ranks
was bimodal between launches (1.5 or 14-16 GB/s) while the rounds of one launch agreed, so the
spread over rounds inside one launch hid it. ``calibrate`` therefore makes every round a launch
of its own, pins the ranks to cores while there is one per rank (``mpiexec --bind-to core``),
records where each rank ran
(:func:`current_cpu`), and calls two clusters of launches (:func:`launch_modes`) and ranks that
shared a core while there were cores enough (:func:`shared_cores`) by their names.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

# The fitted numbers whose spread decides (the per-call cost is small and noisy by nature: reported only).
JUDGED = ("alpha", "beta", "gamma", "delta")
REPORTED = (*JUDGED, "call_overhead")
MAX_SPREAD = 0.25  # (max - min) / median over the rounds, above which a parameter is not trusted
MODE_GAP = 2.0  # sorted launches' 1/beta jumping by this factor: two modes, not noise
CURVES = ("message_curve", "reduce_curve", "copy_curve")

QUIET_ADVICE = """\
how to get a quiet measurement:
  - keep calibrate's default pinning (--bind auto: --bind-to core with a core per rank); unpinned ranks can share one;
  - stop other jobs on the machine (the load average was {load}; ideally below 0.5 per core) or use an idle node;
  - measure at most one rank per core (--nprocs 2 on 2 cores); more ranks than cores are predicted by scaling;
  - under your own mpiexec, pin the ranks to cores (mpiexec --bind-to core); keep power settings fixed;
  - take more rounds (--rounds 5) and, once quiet, COLLECTIVES_SIM_STATISTIC=median;
  - check with 'python -m collectives.sim calibrate' twice: the two profiles should agree within the spread."""


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def current_cpu() -> int | None:
    """The CPU this process last ran on (Linux: field 39 of /proc/self/stat), None where unknown."""
    try:
        with open("/proc/self/stat") as f:
            text = f.read()
        return int(text.rpartition(")")[2].split()[36])  # fields after the command name start at field 3
    except (OSError, ValueError, IndexError):
        return None


def main_cpu(cpus: dict[str, int]) -> int | None:
    """The CPU a rank was seen on most often (``cpus``: CPU -> times seen), None if never seen."""
    return int(max(cpus, key=cpus.get)) if cpus else None


def shared_cores(placement: list[dict[str, Any]], cores: int) -> str | None:
    """With no more ranks than cores, ranks seen mostly on the same CPU, in words (None if none did).

    ``placement``: per rank, ``{"rank", "affinity", "cpus": {cpu: times seen}}``. Two ranks on one
    core take turns, so every exchange between them waits for a context switch: the suspected
    slow mode of an unpinned launch (docs/simulator.md, Calibration and validation).
    """
    if len(placement) > cores:
        return None
    by_cpu: dict[int, list[int]] = {}
    for entry in placement:
        cpu = main_cpu(entry.get("cpus", {}))
        if cpu is not None:
            by_cpu.setdefault(cpu, []).append(int(entry["rank"]))
    crowded = [
        f"ranks {', '.join(map(str, ranks))} on cpu {cpu}" for cpu, ranks in sorted(by_cpu.items()) if len(ranks) > 1
    ]
    return "; ".join(crowded) or None


def launch_modes(bandwidths: list[float], gap: float = MODE_GAP) -> tuple[list[int], list[int]] | None:
    """Two clusters of launches (indices of the slow ones, of the fast ones) when the sorted
    bandwidths jump by more than ``gap`` between neighbours; None when they form one cluster."""
    if len(bandwidths) < 2 or min(bandwidths) <= 0:
        return None
    order = sorted(range(len(bandwidths)), key=bandwidths.__getitem__)
    jumps = [bandwidths[order[i + 1]] / bandwidths[order[i]] for i in range(len(order) - 1)]
    k = max(range(len(jumps)), key=jumps.__getitem__)
    if jumps[k] <= gap:
        return None
    return sorted(order[: k + 1]), sorted(order[k + 1 :])


PROBE_BYTES = 256 << 10  # the message size at which the two exchanges are compared (:func:`dirty_lines`)


def curve_at(curve: list[list[float]] | None, m: int) -> float | None:
    """The time a measured (bytes, seconds) curve gives at exactly m bytes, None if it was not measured."""
    return next((float(t) for size, t in curve or [] if size == m), None)


def dirty_lines(rounds: list[dict[str, Any]], slow: list[int], fast: list[int]) -> str | None:
    """Why the slow launches are slow, when the measurements say: only sending data just written.

    ``calibrate`` times two exchanges: re-sending a buffer nobody modifies (after the first step
    the receiver's cache holds it) and sending data the sender has just reduced into (its cache
    lines are dirty on the sender's core and must cross to the receiver's). When the slow
    launches' plain exchange of :data:`PROBE_BYTES` is as fast as the fast launches' (within
    1.5x) but their reducing exchange is more than :data:`MODE_GAP` times slower, the ranks were
    not taking turns on one core (that would slow both): moving modified data between the two
    cores was slow, which is how the cores are placed under the OS (a virtual machine's vCPUs on
    cores that share a cache or not), out of reach of ``--bind``.
    """

    def median_at(ids: list[int], key: str) -> float | None:
        values = [v for i in ids if (v := curve_at(rounds[i].get(key), PROBE_BYTES)) is not None]
        return float(np.median(values)) if values else None

    plain = [median_at(ids, "exchange") for ids in (slow, fast)]
    dirty = [median_at(ids, "exchange_reduce") for ids in (slow, fast)]
    if None in plain or None in dirty or min(plain) <= 0 or min(dirty) <= 0:
        return None
    if plain[0] / plain[1] > 1.5 or dirty[0] / dirty[1] <= MODE_GAP:
        return None
    return (
        f"the slow launches sent data just written {dirty[0] / dirty[1]:.1f}x slower "
        f"({dirty[1] * 1e6:.0f} -> {dirty[0] * 1e6:.0f} us per {PROBE_BYTES >> 10} KiB exchange) but re-sent an "
        f"unmodified buffer as fast ({plain[1] * 1e6:.0f} -> {plain[0] * 1e6:.0f} us): moving modified cache lines "
        "between the cores was slow (how the cores sit under the OS, e.g. a VM's vCPUs; pinning cannot change it), "
        "not ranks sharing a core"
    )


def launch_problems(p: int, rounds: list[dict[str, Any]], cores: int) -> list[str]:
    """The launches of rank count ``p`` in words when they split into a slow and a fast mode, and
    every launch whose ranks shared a core although there were cores enough.

    The modes are read off the measured reducing exchange of :data:`PROBE_BYTES` where every
    launch has it (the fitted 1/beta swings with the largest sizes' noise: 32 to 191 GB/s between
    three launches in one mode was seen), else off 1/beta.
    """
    problems = []
    probes = [curve_at(r.get("exchange_reduce"), PROBE_BYTES) for r in rounds]
    if all(t is not None and t > 0 for t in probes):
        speeds = [PROBE_BYTES / t for t in probes]

        def show(ids: list[int]) -> str:
            took = ", ".join(f"{probes[i] * 1e6:.0f}" for i in ids)
            return f"{took} us (launch{'es' if len(ids) > 1 else ''} {', '.join(str(i + 1) for i in ids)})"

        what = f"a {PROBE_BYTES >> 10} KiB reducing exchange took"
    else:
        speeds = [1 / float(r["model"]["beta"]) if float(r["model"]["beta"]) > 0 else 0.0 for r in rounds]

        def show(ids: list[int]) -> str:
            rates = ", ".join(f"{speeds[i] / 1e9:.3g}" for i in ids)
            return f"{rates} GB/s (launch{'es' if len(ids) > 1 else ''} {', '.join(str(i + 1) for i in ids)})"

        what = "1/beta"
    modes = launch_modes(speeds)
    if modes is not None:
        problems.append(
            f"p={p}: bimodal between launches: {what} {show(modes[0])} vs {show(modes[1])}; "
            "each launch keeps its mode, so a model from one launch mispredicts another"
        )
        why = dirty_lines(rounds, *modes)
        if why:
            problems.append(f"p={p}: {why}")
    for i, r in enumerate(rounds):
        crowded = shared_cores(r.get("placement", []), cores)
        if crowded:
            problems.append(f"p={p}: launch {i + 1}: ranks shared a core with {cores} cores free ({crowded})")
    return problems


def core_share(p: int, cores: int) -> float:
    """How many ranks share each core when p ranks run on ``cores`` cores (1 when each has its own)."""
    if p < 1 or cores < 1:
        raise ValueError(f"core_share needs p >= 1 and cores >= 1, got p={p}, cores={cores}")
    return max(1.0, p / cores)


def parameter_spread(rounds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """For each fitted parameter over the rounds' models: median, min, max and spread = (max - min) / median.

    A parameter that is zero in every round has spread 0; one that is zero in the median but not
    everywhere has an infinite spread (it was not measured reliably).
    """
    if not rounds:
        raise ValueError("parameter_spread needs at least one round")
    out = {}
    for key in REPORTED:
        values = np.array([float(r.get(key, 0.0)) for r in rounds])
        median, lo, hi = float(np.median(values)), float(values.min()), float(values.max())
        if hi == lo:
            spread = 0.0
        elif median > 0:
            spread = (hi - lo) / median
        else:
            spread = float("inf")
        out[key] = {"median": median, "min": lo, "max": hi, "spread": spread}
    return out


def untrusted(spreads: dict[str, dict[str, dict[str, float]]], max_spread: float = MAX_SPREAD) -> list[str]:
    """The judged parameters whose spread exceeds ``max_spread``, per rank count, in words (empty: trusted)."""
    problems = []
    for p, per in sorted(spreads.items(), key=lambda kv: int(kv[0])):
        for key in JUDGED:
            s = per[key]
            if s["spread"] > max_spread:
                problems.append(
                    f"p={p}: {_label(key)} ranged {_range(key, s)} (spread {s['spread']:.0%} > {max_spread:.0%})"
                )
    return problems


def busy_machine(load: list[float] | None, cores: int) -> str | None:
    """A problem in words when the machine was already busy before calibrating (1-minute load above
    its cores: other processes took the cores, and consistent rounds then describe a loaded machine)."""
    if load and load[0] > cores:
        return f"the load average was {load[0]:g} on {cores} core(s) before measuring: other processes held the cores"
    return None


def median_model(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One model (as a dict) from the rounds' models: every number the median over rounds, every
    measured curve the pointwise median (the rounds measure the same sizes)."""
    out = dict(rounds[0])
    for key in REPORTED:
        out[key] = float(np.median([float(r.get(key, 0.0)) for r in rounds]))
    for key in CURVES:
        curves = [r.get(key) for r in rounds]
        if any(c is None for c in curves):
            continue
        sizes = [m for m, _ in curves[0]]
        if any([m for m, _ in c] != sizes for c in curves):
            raise ValueError(f"the rounds measured {key} at different sizes; they cannot be combined")
        out[key] = [[m, float(np.median([c[i][1] for c in curves]))] for i, m in enumerate(sizes)]
    return out


def scale_model(model: dict[str, Any], factor: float) -> dict[str, Any]:
    """The model (as a dict) with every time cost stretched by ``factor`` (ranks sharing cores)."""
    if factor == 1:
        return dict(model)
    out = dict(model)
    for key in (*REPORTED, "o", "g"):
        if key in out:
            out[key] = float(out[key]) * factor
    for key in CURVES:
        if out.get(key) is not None:
            out[key] = [[m, float(t) * factor] for m, t in out[key]]
    return out


def _label(key: str) -> str:
    return {"beta": "1/beta", "gamma": "1/gamma", "delta": "1/delta"}.get(key, key)


def _value(key: str, x: float) -> str:
    if key in ("beta", "gamma", "delta"):
        return "inf" if x <= 0 else f"{1 / x / 1e9:.3g} GB/s"
    return f"{x * 1e6:.3g} us"


def _range(key: str, s: dict[str, float]) -> str:
    """The range in the units shown, smallest first (the largest beta is the smallest bandwidth)."""
    lo, hi = (s["max"], s["min"]) if key in ("beta", "gamma", "delta") else (s["min"], s["max"])
    return f"{_value(key, lo)} .. {_value(key, hi)}"


def describe_spread(spreads: dict[str, dict[str, dict[str, float]]], rounds: int) -> list[str]:
    """Lines for the report: every parameter's median and range over the rounds, per rank count."""
    lines = [f"spread over {rounds} rounds ((max - min) / median; above {MAX_SPREAD:.0%} is not trusted):"]
    for p, per in sorted(spreads.items(), key=lambda kv: int(kv[0])):
        parts = []
        for key in REPORTED:
            s = per[key]
            parts.append(f"{_label(key)} {_value(key, s['median'])} [{_range(key, s)}, {s['spread']:.0%}]")
        lines.append(f"  p={p}: " + "; ".join(parts))
    return lines
