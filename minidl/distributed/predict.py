"""Predicted gradient-synchronisation time per step, from the interconnect simulator.

The study's planner asks what a step would cost on p workers of a machine it does not have:
this module is its one door to ``collectives.sim``. A machine is a simulator preset (or an
emulated ``--link BW,LATENCY``, the alpha-beta link the trainer's emulation stretches messages
to) on a topology; each of the trainer's gradient buckets is timed per allreduce algorithm, by
simulating it message by message when that is cheap and by the algorithm's closed form beyond,
and the buckets are laid over the backward pass the way ``DistributedDataParallel`` launches them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from collectives import ALGORITHMS, Link, algorithm_names, parse_link
from collectives.algorithms import resolve
from collectives.sim import CostModel, SimulationError, simulate
from collectives.sim.machine import Machine, machine_from_options
from collectives.sim.presets import PRESETS, get_device
from collectives.sim.sweep import formula_time
from minidl.distributed.buckets import plan_buckets

SIMULATION_BUDGET = 20_000  # messages per simulation; beyond, the closed form (as the sweep does)


def algorithms() -> list[str]:
    """Every registered allreduce algorithm, by name."""
    return algorithm_names(False)


def presets() -> list[str]:
    return sorted(PRESETS)


def machine(
    preset: str = "ib-edr",
    topology: str = "full",
    link: str | Link | None = None,
    device: str = "cpu",
    profile: str | None = None,
) -> Machine:
    """A machine to predict on: a link preset on a topology, or an emulated ``BW,LATENCY`` link.

    With ``link`` every message costs latency + bytes / bandwidth (what ``--link`` emulates), on
    the fully connected network; reductions cost ``device``'s time per byte. With ``profile`` (a
    ``python -m collectives.sim calibrate`` output) the per-message costs measured on this machine
    at each rank count are added to the link's, as the simulator does for a calibrated machine.
    """
    if link is not None and profile is not None:
        emulated = parse_link(link)
        return machine_from_options(profile=profile, bandwidth=emulated.bandwidth, latency=emulated.latency)
    if link is not None:
        emulated = parse_link(link)
        dev = get_device(device)
        model = CostModel.textbook(emulated.latency, 1.0 / emulated.bandwidth, dev.gamma, dev.delta)
        return Machine(model, "full", None, source=f"emulated link {emulated}")
    return machine_from_options(link=preset, topology=topology, device=device)


def allreduce_time(nbytes: int, ranks: int, algorithm: str, on: Machine, itemsize: int = 4) -> float:
    """Predicted seconds of one allreduce of ``nbytes`` per rank on ``ranks`` ranks (inf: cannot run)."""
    if ranks <= 1 or nbytes <= 0:
        return 0.0
    spec = ALGORITHMS[resolve(algorithm, auto=False)]
    nbytes -= nbytes % itemsize
    if spec.constraints.violation(ranks, nbytes // itemsize):
        return math.inf
    if spec.cost(ranks, nbytes, itemsize).messages_per_rank * ranks > SIMULATION_BUDGET:
        return formula_time(spec, ranks, nbytes, itemsize, on)
    model, topology = on.build(ranks)
    try:
        return simulate(spec, ranks, nbytes, model=model, topology=topology, dtype=np.dtype(f"f{itemsize}")).time
    except SimulationError:
        return formula_time(spec, ranks, nbytes, itemsize, on)


def trainer_buckets(param_bytes: Sequence[int], bucket_mb: float = 25.0, first_bucket_mb: float = 1.0) -> list[int]:
    """The byte sizes of the trainer's gradient buckets, in launch order (reverse registration)."""
    cap = int(bucket_mb * 2**20)
    first = int(min(first_bucket_mb, bucket_mb) * 2**20)
    plan = plan_buckets(list(param_bytes), [np.dtype(np.float32)] * len(param_bytes), cap, first)
    return [sum(param_bytes[i] for i in bucket) for bucket in plan]


@dataclass(frozen=True)
class SyncPrediction:
    """One step's communication: per-bucket allreduce times and what backward could not hide."""

    bucket_seconds: tuple[float, ...]
    exposed: float  # seconds the step waits after backward

    @property
    def comm(self) -> float:
        return sum(self.bucket_seconds)


def sync_time(
    buckets: Sequence[int], ranks: int, algorithm: str, on: Machine, backward: float, overlap: bool = True
) -> SyncPrediction:
    """Bucket allreduces laid over a backward pass of ``backward`` seconds.

    A bucket is ready when backward has produced its share of the gradient bytes (backward is
    taken to produce gradients at a steady rate, last layer first); one communication thread
    sends buckets in turn. What runs past the end of backward is exposed.
    """
    times = tuple(allreduce_time(b, ranks, algorithm, on) for b in buckets)
    if not overlap:
        return SyncPrediction(times, sum(times))
    total = float(sum(buckets)) or 1.0
    produced = np.cumsum(np.asarray(buckets, dtype=float))
    ready = [
        min(backward, backward * float(b) / total) for b in produced
    ]  # the last: when backward ends, not 1 ulp after
    return SyncPrediction(times, exposed_after(ready, times, backward))


def comm_finish(ready: Sequence[float], seconds: Sequence[float]) -> list[float]:
    """When each bucket's allreduce ends, one communication thread running them in order.

    Bucket k starts when it is ready and every earlier bucket has been launched and finished
    (``DistributedDataParallel`` launches strictly in index order), and takes ``seconds[k]``.
    """
    finish, done, launched = [], 0.0, 0.0
    for r, t in zip(ready, seconds):
        launched = max(launched, r)
        done = max(done, launched) + t
        finish.append(done)
    return finish


def exposed_after(ready: Sequence[float], seconds: Sequence[float], backward: float) -> float:
    """Seconds the step waits after a backward pass of ``backward`` seconds for the buckets' allreduces."""
    finish = comm_finish(ready, seconds)
    return max(0.0, finish[-1] - backward) if finish else 0.0
