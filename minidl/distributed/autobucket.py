"""``--bucket-mb auto``: the bucket size that a prediction says hides the most communication.

Small buckets start communicating early but pay the per-message latency many times; large ones
pay it once but start late, when little backward is left to hide behind. Which wins depends on
when backward produces each gradient and on what a message costs on the link. Both are known
before training starts: the first backward passes give each parameter's gradient-ready time
(post-accumulate hooks), and the simulator gives each candidate bucket's allreduce time on the
link. For every cap at which the bucket plan changes, the buckets are laid over the measured
backward exactly as ``DistributedDataParallel`` launches them (in index order, each when its last
gradient is ready, one communication thread) and the cap with the least predicted exposed
communication wins (give or take the measurement's noise, within which fewer messages win). One
measurement and one computation, no trial runs (Horovod's autotuner instead tries sizes on the
live job and keeps the best).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from minidl.distributed.buckets import plan_buckets
from minidl.distributed.comm import Link
from minidl.distributed.predict import allreduce_time, comm_finish, machine
from minidl.distributed.timing import StepTiming
from minidl.nn.module import Module
from minidl.tensor import Tensor

MIB = 2**20
MAX_CANDIDATES = 400  # caps evaluated; more distinct plans than that are thinned to a geometric grid
GRID_RATIO = 2 ** (1 / 8)  # the grid's spacing: 8 caps per doubling
TOLERANCE = 0.05  # exposed times closer than this fraction of the backward pass count as equal


@dataclass(frozen=True)
class BackwardProfile:
    """When one backward pass produced each gradient (parameters in registration order, as DDP takes them)."""

    sizes: tuple[int, ...]  # bytes of each parameter's gradient
    ready: tuple[float, ...]  # seconds after backward began when it was complete
    backward: float  # seconds the whole backward pass took
    dtypes: tuple[str, ...] = ()  # numpy dtype names; empty means all float32

    def __post_init__(self) -> None:
        if len(self.sizes) != len(self.ready) or (self.dtypes and len(self.dtypes) != len(self.sizes)):
            raise ValueError(
                f"BackwardProfile: {len(self.sizes)} sizes, {len(self.ready)} ready times and "
                f"{len(self.dtypes)} dtypes; expected one of each per parameter"
            )
        if not self.sizes:
            raise ValueError("BackwardProfile: no parameters")


@dataclass(frozen=True)
class BucketPlan:
    """One cap's buckets laid over the measured backward: what the communication thread would do."""

    cap_bytes: int
    buckets: tuple[int, ...]  # bytes per bucket, in launch order
    launch: tuple[float, ...]  # seconds after backward began when each bucket could be launched
    seconds: tuple[float, ...]  # predicted allreduce time per bucket
    exposed: float  # predicted seconds the step waits after backward
    backward: float = 0.0  # the measured backward pass the plan is laid over (seconds)

    @property
    def cap_mb(self) -> float:
        return self.cap_bytes / MIB

    @property
    def comm(self) -> float:
        return float(sum(self.seconds))

    @property
    def overlap(self) -> float:
        """Predicted fraction of communication hidden behind backward (nan without communication)."""
        return max(0.0, 1.0 - self.exposed / self.comm) if self.comm > 0 else float("nan")


def evaluate(
    profile: BackwardProfile,
    cap_bytes: int,
    allreduce_seconds: Callable[[int], float],
    first_cap_bytes: int = MIB,
    overlap: bool = True,
    extra_last_bytes: int = 0,
) -> BucketPlan:
    """The buckets ``DistributedDataParallel(bucket_cap_mb=cap_bytes / 2**20)`` would build, and their schedule.

    ``allreduce_seconds(nbytes)`` is one allreduce's time; ``extra_last_bytes`` is what rides on the
    last bucket (the noise scale's spare element); without ``overlap`` every bucket waits for backward's end.
    """
    dtypes = [np.dtype(d) for d in profile.dtypes] or [np.dtype(np.float32)] * len(profile.sizes)
    plan = plan_buckets(list(profile.sizes), dtypes, cap_bytes, min(first_cap_bytes, cap_bytes))
    sizes = [sum(profile.sizes[i] for i in bucket) for bucket in plan]
    sizes[-1] += extra_last_bytes
    ready = [max(profile.ready[i] for i in bucket) if overlap else profile.backward for bucket in plan]
    seconds = [allreduce_seconds(n) for n in sizes]
    finish = comm_finish(ready, seconds)
    launch = np.maximum.accumulate(ready).tolist()
    exposed = max(0.0, float(finish[-1]) - profile.backward)
    return BucketPlan(cap_bytes, tuple(sizes), tuple(launch), tuple(seconds), exposed, profile.backward)


def candidate_caps(sizes: Sequence[int]) -> list[int]:
    """Caps at which the bucket plan can change: sums of consecutive parameters (thinned beyond MAX_CANDIDATES).

    A greedy bucket closes when the next parameter would exceed the cap, so the plan depends only on
    which runs of consecutive parameters fit: between two such sums every cap gives the same plan.
    """
    sums = np.concatenate([[0], np.cumsum(np.asarray(sizes[::-1], dtype=np.int64))])
    runs = np.unique((sums[None, :] - sums[:, None])[np.triu_indices(len(sums), 1)])
    if len(runs) <= MAX_CANDIDATES:
        return [int(c) for c in runs]
    low, high = float(runs[0]), float(runs[-1])
    steps = int(np.ceil(np.log(high / low) / np.log(GRID_RATIO)))
    grid = np.unique(np.round(low * GRID_RATIO ** np.arange(steps + 1)).astype(np.int64))
    return sorted({*(int(c) for c in grid if c < high), int(high)})


def choose(
    profile: BackwardProfile,
    allreduce_seconds: Callable[[int], float],
    first_cap_bytes: int = MIB,
    overlap: bool = True,
    extra_last_bytes: int = 0,
    tolerance: float = TOLERANCE,
) -> BucketPlan:
    """The cap with the least predicted exposed communication, give or take ``tolerance`` x the backward pass.

    Plans whose exposed time is that close to the least are equally good as far as the measurement
    can tell (ready times move by a few percent between passes); among them the one with the least
    communication wins (fewer messages: each also costs what the link model does not see, a thread
    wake-up, the GIL), then the one with less exposed time, then the largest cap.
    """
    cache: dict[int, float] = {}

    def timed(nbytes: int) -> float:
        if nbytes not in cache:
            cache[nbytes] = allreduce_seconds(nbytes)
        return cache[nbytes]

    plans = [
        evaluate(profile, cap, timed, first_cap_bytes, overlap, extra_last_bytes)
        for cap in candidate_caps(profile.sizes)
    ]
    least = min(plan.exposed for plan in plans)
    good = [plan for plan in plans if plan.exposed <= least + tolerance * profile.backward]
    # rounded to the picosecond: sums of the same times in another order must compare equal
    return min(good, key=lambda plan: (round(plan.comm, 12), round(plan.exposed, 12), -plan.cap_bytes))


def measure_backward(model: Module, loss_of: Callable[[], Tensor], repeats: int = 3) -> BackwardProfile:
    """Run ``loss_of().backward()`` ``repeats`` times on ``model`` alone, timing each gradient's arrival.

    The first pass warms caches and numba's compiler and is dropped; each parameter's ready time is
    the median of the others. Gradients are cleared afterwards: the passes do not train.
    """
    if repeats < 2:
        raise ValueError(f"measure_backward: repeats must be at least 2 (the first pass is dropped), got {repeats}")
    params = [p for _, p in model.named_parameters() if p.requires_grad]
    stamps = np.full((repeats, len(params)), np.nan)
    lengths = np.zeros(repeats)
    row = [0]

    def stamper(i: int) -> Callable[[Tensor], None]:
        def stamp(_: Tensor) -> None:
            stamps[row[0], i] = time.perf_counter()

        return stamp

    removers = [p.register_post_accumulate_grad_hook(stamper(i)) for i, p in enumerate(params)]
    saved = {name: np.array(value, copy=True) for name, value in model.state_dict().items()}  # BatchNorm statistics
    try:
        for r in range(repeats):
            row[0] = r
            for p in params:
                p.grad = None
            loss = loss_of()
            start = time.perf_counter()
            loss.backward()
            end = time.perf_counter()
            stamps[r] -= start
            lengths[r] = end - start
    finally:
        for remove in removers:
            remove()
        for p in params:
            p.grad = None
        model.load_state_dict(saved)
    backward = float(np.median(lengths[1:]))
    ready = np.median(stamps[1:], axis=0)
    ready = np.where(np.isnan(ready), backward, np.minimum(ready, backward))  # no gradient: sent at backward's end
    return BackwardProfile(
        tuple(int(p.data.nbytes) for p in params),
        tuple(float(t) for t in ready),
        backward,
        tuple(p.data.dtype.name for p in params),
    )


def choose_bucket_mb(
    model: Module,
    loss_of: Callable[[], Tensor],
    comm: Any,
    algorithm: str,
    link: Link | str,
    overlap: bool = True,
    extra_last_bytes: int = 0,
    first_bucket_mb: float = 1.0,
) -> BucketPlan:
    """The trainer's ``--bucket-mb auto``: every rank measures backward, rank 0 chooses, all get its choice.

    Collective over ``comm``. The ranks measure together (as they will train: sharing the cores),
    rank 0 predicts on ``link`` (the emulated link, a preset or ``BW,LATENCY``) and broadcasts its
    plan, so every rank builds the same buckets.
    """
    profile = measure_backward(model, loss_of)
    ranks = comm.Get_size()
    plan = None
    if comm.Get_rank() == 0:
        on = machine(link=link)
        plan = choose(
            profile,
            lambda n: allreduce_time(n, ranks, algorithm, on),
            int(first_bucket_mb * MIB),
            overlap,
            extra_last_bytes,
        )
    if ranks > 1:
        plan = comm.bcast(plan, root=0)  # once per run: a small pickle is fine
    return plan


def compare(plan: BucketPlan, steps: Sequence[StepTiming]) -> tuple[dict[str, float], str]:
    """Predicted against measured communication per step: summary fields and one line for the trainer.

    Measured figures are medians over the steps after the first (which also pays for warm-up and the
    buckets' one-time agreement check); overlap is over the same steps' totals.
    """
    later = list(steps[1:] or steps)
    comm = sum(s.comm for s in later)
    measured_overlap = max(0.0, 1.0 - sum(s.exposed_comm for s in later) / comm) if comm > 0 else float("nan")
    found = {
        "bucket_mb": plan.cap_mb,
        "buckets": len(plan.buckets),
        "predicted_comm_seconds": plan.comm,
        "predicted_exposed_seconds": plan.exposed,
        "predicted_overlap": plan.overlap,
        "predicted_backward_seconds": plan.backward,
        "measured_comm_seconds": float(np.median([s.comm for s in later])),
        "measured_exposed_seconds": float(np.median([s.exposed_comm for s in later])),
        "measured_overlap": measured_overlap,
        "measured_backward_seconds": float(np.median([s.backward for s in later])),
    }

    def ms(key: str) -> str:
        return f"{1e3 * found[key]:.2f} ms"

    plural = "bucket" if len(plan.buckets) == 1 else "buckets"

    line = (
        f"  --bucket-mb auto chose {plan.cap_mb:.4g} MiB ({len(plan.buckets)} {plural}); per step, predicted: "
        f"allreduce {ms('predicted_comm_seconds')}, exposed {ms('predicted_exposed_seconds')}, hidden "
        f"{_pct(plan.overlap)} (backward {ms('predicted_backward_seconds')}); measured (median of {len(later)} "
        f"steps): allreduce {ms('measured_comm_seconds')}, exposed {ms('measured_exposed_seconds')}, hidden "
        f"{_pct(measured_overlap)} (backward {ms('measured_backward_seconds')})"
    )
    return found, line


def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.0f}%"
