"""Paired timing: the engines take single steps in turn, and each pair of neighbouring steps gives a ratio.

A shared machine drifts (other processes, frequency, the page cache) on the scale of tens of
milliseconds, so two timings taken far apart compare the machine as much as the engines. Here
the engines alternate at the finest fair grain, one training step each, in an order that
rotates with every pair (minidl, torch, floor; torch, floor, minidl; ...), so neither engine
always runs first after the other's cache footprint. Pair i is the i-th step of every engine,
taken within a few step times of each other; the ratio of two engines is reported as the median
of the per-pair ratios with its spread (min-max, and the quartiles in the JSON). The spread is
the honest part: a median of 1.05x whose quartiles straddle 1.0 is no evidence either way.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from minidl.bench.workloads import BATCH, check_same_loss, engines_for

# the ratios reported: minidl against each baseline, and the floor against PyTorch
PAIRS = (("minidl", "torch"), ("minidl", "numpy-floor"), ("minidl", "minidl-numpy"), ("numpy-floor", "torch"))


def time_steps(step: Callable[[], Any], steps: int) -> float:
    """Median seconds per call over ``steps`` consecutive calls (for one engine alone, e.g. the trap's parts)."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# Untimed lead-in steps before each timed step when the engines run several threads (``lead_in``): after
# a step, PyTorch's OpenMP (libgomp) and OpenBLAS's workers keep spinning for a few milliseconds, so the
# first step after another engine's shares the cores with that engine's threads (the ResNet block at 2
# threads: minidl alone 14.2 ms per step, right after PyTorch's steps 16.3-17.6 ms), while a pause
# instead lets the threads fall asleep and bills their wake-up to the next step (PyTorch's MLP step
# 12.7 -> 14.6 ms). An untimed step of the same engine first puts its own threads in the state they
# have in a training loop, and the other engine's threads out of the way; at one thread nothing spins.
LEAD_IN_STEPS = 1


def default_lead_in(threads: int) -> int:
    """Untimed steps before each timed one at ``threads`` threads: ``LEAD_IN_STEPS`` above one, else none."""
    return LEAD_IN_STEPS if threads > 1 else 0


def interleaved(engines: dict[str, Callable[[], Any]], pairs: int, lead_in: int = 0) -> dict[str, list[float]]:
    """Seconds of ``pairs`` single steps per engine, the engines alternating turn by turn in rotating order,
    each turn ``lead_in`` untimed steps and one timed step (see ``LEAD_IN_STEPS``)."""
    names = list(engines)
    times: dict[str, list[float]] = {k: [] for k in names}
    clock = time.perf_counter
    for i in range(pairs):
        shift = i % len(names)
        for k in names[shift:] + names[:shift]:
            step = engines[k]
            for _ in range(lead_in):
                step()
            start = clock()
            step()
            times[k].append(clock() - start)
    return times


def ratio_summary(num: Sequence[float], den: Sequence[float]) -> dict[str, float]:
    """Median, quartiles and min-max of the per-pair ratios ``num[i] / den[i]``."""
    ratios = sorted(a / b for a, b in zip(num, den, strict=True))
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    return {
        "median": statistics.median(ratios),
        "q1": q1,
        "q3": q3,
        "min": ratios[0],
        "max": ratios[-1],
        "pairs": len(ratios),
    }


def run_model(name: str, threads: int, args: argparse.Namespace, use_torch: bool) -> dict[str, Any]:
    """Build the engines for one model, check they agree, warm up, and time ``rounds * steps`` interleaved pairs."""
    engines, _ = engines_for(name, use_torch, args.numpy_reference)
    losses = check_same_loss(name, engines)
    for fn in engines.values():
        for _ in range(args.warmup):
            fn()
    lead_in = default_lead_in(threads) if args.lead_in is None else args.lead_in
    times = interleaved(engines, args.rounds * args.steps, lead_in)
    result: dict[str, Any] = {
        "model": name,
        "batch": BATCH[name],
        "threads": threads,
        "lead_in_steps": lead_in,
        "first_step_loss": losses,
        "median_step_ms": {k: 1e3 * statistics.median(v) for k, v in times.items()},
        # per round (``steps`` consecutive pairs): the median step, to see drift over the run
        "round_step_ms": {
            k: [1e3 * statistics.median(v[r * args.steps : (r + 1) * args.steps]) for r in range(args.rounds)]
            for k, v in times.items()
        },
        "step_ms": {k: [1e3 * t for t in v] for k, v in times.items()},
        "ratios": {},
    }
    for a, b in PAIRS:
        if a in times and b in times:
            result["ratios"][f"{a}/{b}"] = ratio_summary(times[a], times[b])
    return result
