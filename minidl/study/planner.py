"""The time-to-accuracy model behind ``plan`` and ``validate``: steps x step time, per worker count.

time to target(p, algorithm) = S(b p) x [forward + backward + exposed communication + optimizer]

* compute per step (forward, backward, optimizer at the per-worker batch b) is measured by a short
  run in this process and divided by ``device_speed``; when p ranks share ``cores`` cores (the
  validation machine), compute stretches by p / cores;
* communication: the gradient, split into the trainer's buckets, each timed by the simulator for
  the algorithm (:mod:`minidl.distributed.predict`) and laid over backward as DDP launches them;
* S(B), the steps to the target at global batch B, is McCandlish et al.'s S_min (1 + B_crit / B),
  fitted to a batch-scaling study, or (with no study) built from the gradient noise scale measured
  in one short run: B_crit = B_simple and S_min from that run's steps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import minidl
import minidl.functional as F
from minidl.distributed import predict
from minidl.experiments import build_model
from minidl.study.errors import StudyError
from minidl.study.recipes import RECIPES
from minidl.study.regimes import steps_to_target
from minidl.study.training import RunSpec, StudyData, budget_steps, train_run
from minidl.tensor import Tensor


@dataclass(frozen=True)
class ComputeProfile:
    """Seconds per step of one worker at ``batch`` samples, and the model's parameter sizes."""

    batch: int
    forward: float
    backward: float
    optimizer: float
    param_bytes: tuple[int, ...]

    @property
    def total(self) -> float:
        return self.forward + self.backward + self.optimizer

    def scaled(self, speed: float) -> ComputeProfile:
        return ComputeProfile(
            self.batch, self.forward / speed, self.backward / speed, self.optimizer / speed, self.param_bytes
        )


def measure_compute(data: StudyData, batch: int, steps: int = 60, recipe: str = "momentum") -> ComputeProfile:
    """Mean forward, backward and optimizer seconds over ``steps`` steps (after 5 to warm up).

    The mean, not the median: on a shared machine some steps are preempted, and a run's time to
    target pays for those too.
    """
    minidl.manual_seed(0)
    model = build_model(data.model, data.info, data.hidden)
    params = list(model.parameters())
    opt = RECIPES[recipe].optimizer(params, 1e-3)
    rng = np.random.default_rng(0)
    phases: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer": []}
    for i in range(steps + 5):
        idx = rng.integers(0, data.n, batch)
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(Tensor(data.x[idx])), Tensor(data.y[idx]))
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad()
        t3 = time.perf_counter()
        if i >= 5:
            phases["forward"].append(t1 - t0)
            phases["backward"].append(t2 - t1)
            phases["optimizer"].append(t3 - t2)
    med = {k: float(np.mean(v)) for k, v in phases.items()}
    return ComputeProfile(
        batch, med["forward"], med["backward"], med["optimizer"], tuple(p.data.nbytes for p in params)
    )


@dataclass(frozen=True)
class StepsModel:
    """S(B) = s_min (1 + b_crit / B) steps to ``target``, and where the numbers came from."""

    s_min: float
    b_crit: float
    target: float
    recipe: str
    source: str
    lrs: tuple[tuple[int, float], ...] = ()  # the study's best learning rate per batch

    def lr(self, batch: int) -> float:
        """The study's best rate at ``batch`` if it measured that batch, else the recipe's rule."""
        return dict(self.lrs).get(batch) or RECIPES[self.recipe].center_lr(batch)

    def steps(self, batch: float) -> float:
        return self.s_min * (1.0 + self.b_crit / batch)


def steps_from_study(study: str | Path, recipe: str | None = None, target: float | None = None) -> StepsModel:
    """The McCandlish fit of a batch-scaling study's curve (the best-fitting recipe unless named)."""
    from minidl.study.analysis import choose_target, summarize
    from minidl.study.results import read_config, read_runs

    out = Path(study)
    config = read_config(out)
    # the plain runs: a communication hook's runs are a comparison, not a recipe the planner can scale
    records = [r for r in read_runs(out) if r.spec.get("comm_hook", "none") == "none"]
    if not records:
        raise StudyError(f"{out} holds no finished runs; run 'batch-scaling --out {out}' (or --resume it)")
    recipes = config["recipes"]
    if target is None:
        target = config.get("target") or choose_target(records, min(config["batches"]), recipes[0])
    n = records[0].spec["train_size"]
    summaries = {s.recipe: s for s in summarize(records, target, n)}
    if recipe is not None and recipe not in summaries:
        raise StudyError(f"recipe {recipe!r} is not in the study {out}; it has {', '.join(summaries)}")
    fitted = {name: s for name, s in summaries.items() if s.fit is not None}
    if not fitted:
        raise StudyError(f"no recipe of the study {out} reached the target {target} at two batch sizes: nothing to fit")
    chosen = summaries[recipe] if recipe else min(fitted.values(), key=lambda s: s.fit.s_min * (1 + s.fit.b_crit / 32))
    if chosen.fit is None:
        raise StudyError(f"recipe {chosen.recipe} reached the target {target} at fewer than two batch sizes: no fit")
    return StepsModel(
        chosen.fit.s_min,
        chosen.fit.b_crit,
        target,
        chosen.recipe,
        f"fitted to the batch-scaling study in {out} ({chosen.recipe}, batches {min(config['batches'])}.."
        f"{max(config['batches'])})",
        tuple((p.batch, p.lr) for p in chosen.points if p.lr is not None),
    )


def steps_from_noise_scale(data: StudyData, batch: int, target: float, recipe: str = "momentum") -> StepsModel:
    """With no study: one run at ``batch`` gives S(batch) and B_simple; B_crit = B_simple."""
    spec = RunSpec(
        recipe,
        batch,
        RECIPES[recipe].center_lr(batch),
        0,
        data.hidden,
        data.n,
        budget_steps(data.n, batch, 10, 200),
        warmup_steps=10 if RECIPES[recipe].warmup else 0,
        measure_noise=True,
        sharpness=False,
    )
    record = train_run(spec, RECIPES[recipe], data)
    steps = steps_to_target(record.curve, target)
    if steps is None:
        raise StudyError(
            f"the noise-scale run at batch {batch} never reached the target {target} "
            f"(final accuracy {record.final_test_accuracy:.3f}); lower --target"
        )
    b_simple = min(record.noise, key=lambda sb: abs(sb[0] - steps))[1]
    if not b_simple > 0:
        raise StudyError(f"the gradient noise scale came out {b_simple}; run a batch-scaling study instead")
    s_min = steps / (1 + b_simple / batch)
    return StepsModel(
        s_min,
        b_simple,
        target,
        recipe,
        f"noise-scale model alone (no study): B_crit = B_simple = {b_simple:.0f} measured at batch {batch}, "
        f"S_min from that run's {steps} steps",
    )


@dataclass(frozen=True)
class Prediction:
    workers: int
    algorithm: str
    global_batch: int
    steps: float
    compute: float
    comm: float
    exposed: float

    @property
    def step_time(self) -> float:
        return self.compute + self.exposed

    @property
    def time_to_target(self) -> float:
        return self.steps * self.step_time


def predict_one(
    compute: ComputeProfile,
    steps: StepsModel,
    workers: int,
    algorithm: str,
    machine: Any,
    bucket_mb: float = 25.0,
    overlap: bool = True,
    cores: int | None = None,
) -> Prediction:
    share = max(1.0, workers / cores) if cores else 1.0
    buckets = predict.trainer_buckets(compute.param_bytes, bucket_mb)
    sync = predict.sync_time(buckets, workers, algorithm, machine, compute.backward * share, overlap)
    batch = compute.batch * workers
    return Prediction(workers, algorithm, batch, steps.steps(batch), compute.total * share, sync.comm, sync.exposed)


def predict_all(
    compute: ComputeProfile,
    steps: StepsModel,
    workers: list[int],
    algorithms: list[str],
    machine: Any,
    bucket_mb: float = 25.0,
    overlap: bool = True,
    cores: int | None = None,
) -> list[Prediction]:
    return [predict_one(compute, steps, p, a, machine, bucket_mb, overlap, cores) for p in workers for a in algorithms]


WITHIN = 0.01  # a configuration within 1% of the fastest is as good: take the fewest workers


def best(predictions: list[Prediction], within: float = WITHIN) -> Prediction:
    """The fewest workers whose time to target is within ``within`` of the fastest (then the fastest
    algorithm there): past the critical batch, more workers buy fractions of a percent."""
    finite = [x for x in predictions if math.isfinite(x.time_to_target)]
    if not finite:
        raise StudyError("no algorithm can run at any of the worker counts")
    fastest = min(x.time_to_target for x in finite)
    good = [x for x in finite if x.time_to_target <= fastest * (1 + within)]
    return min(good, key=lambda x: (x.workers, x.time_to_target))


def reason(predictions: list[Prediction], steps: StepsModel, within: float = WITHIN) -> str:
    """Why the best configuration wins, in one sentence."""
    win = best(predictions, within)
    same = {x.workers: x for x in predictions if x.algorithm == win.algorithm}
    bigger = sorted(p for p in same if p > win.workers)
    rivals = sorted(
        (x for x in predictions if x.workers == win.workers and x.algorithm != win.algorithm and math.isfinite(x.comm)),
        key=lambda x: x.time_to_target,
    )
    versus = ""
    if rivals and win.workers > 1:
        versus = (
            f"; at {win.workers} workers {win.algorithm}'s allreduce takes {_ms(win.comm)} per step against "
            f"{_ms(rivals[0].comm)} for {rivals[0].algorithm}"
        )
    if not bigger:
        return (
            f"time to target still falls at {win.workers} workers (global batch {win.global_batch}, critical "
            f"batch {steps.b_crit:.0f}), so the largest cluster wins{versus}."
        )
    nxt = same[bigger[0]]
    fall = 100 * (1 - nxt.steps / win.steps)
    grow = 100 * (nxt.step_time / win.step_time - 1)
    where = (
        f"{win.global_batch / steps.b_crit:.0f}x the critical batch {steps.b_crit:.0f}"
        if win.global_batch > steps.b_crit
        else f"within reach of the critical batch {steps.b_crit:.0f}"
    )
    return (
        f"at {win.workers} workers the global batch {win.global_batch} is already {where}, so going to "
        f"{nxt.workers} cuts steps by only {fall:.1f}% while the {win.algorithm} step time changes by "
        f"{grow:+.1f}% (no configuration is more than {100 * within:g}% faster){versus}."
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} us"
