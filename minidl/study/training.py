"""One training run of the batch-scaling study, in this process, with its accuracy curve.

A global batch B on one process is the same update as p data-parallel ranks with B/p samples
each (the averaged gradient is the gradient of the averaged loss; ``tests/distributed`` checks
the equivalence), so the study trains every batch size in-process: no communication to wait for,
and the step counts are the ones a cluster would see.

Batches are drawn from a stream of seeded permutations of the training set (epoch after epoch,
nothing dropped), so any batch up to the training-set size is allowed and an epoch is always
exactly N samples. Accuracy is measured at every step up to 20, then at steps spaced 5% apart,
on a fixed evaluation subset, so steps to a target are known to within 5%.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import minidl
import minidl.functional as F
from minidl.distributed import GradientNoiseScale, make_comm_hook
from minidl.distributed.local_group import reduce_with_hook
from minidl.experiments import DATASETS, DEFAULT_MODEL, MODELS, build_model, load_dataset
from minidl.study.errors import StudyError
from minidl.study.recipes import Recipe
from minidl.study.sharpness import top_hessian_eigenvalue
from minidl.tensor import Tensor

EVAL_EVERY_STEP_UNTIL = 20
EVAL_SPACING = 1.05  # later evaluations are 5% of the step count apart
NOISE_RANKS = 8  # virtual ranks for the single-process noise-scale estimate
SHARPNESS_SAMPLES = 512


@dataclass
class StudyData:
    """Arrays for training and for the fixed evaluation subsets, plus what builds the model."""

    dataset: str
    model: str
    hidden: tuple[int, ...]
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray  # evaluation subset of the test split
    y_test: np.ndarray
    x_train_eval: np.ndarray  # evaluation subset of the training split (train accuracy, sharpness)
    y_train_eval: np.ndarray
    info: Any

    @property
    def n(self) -> int:
        return len(self.y)

    def subset(self, train_size: int | None = None, hidden: tuple[int, ...] | None = None) -> StudyData:
        """The same data with the first ``train_size`` training samples and/or another width."""
        n = self.n if train_size is None else train_size
        if not 1 <= n <= self.n:
            raise StudyError(f"train size {n} must be between 1 and the training set's {self.n} samples")
        return StudyData(
            self.dataset,
            self.model,
            hidden or self.hidden,
            self.x[:n],
            self.y[:n],
            self.x_test,
            self.y_test,
            self.x_train_eval[: min(n, len(self.y_train_eval))],
            self.y_train_eval[: min(n, len(self.y_train_eval))],
            self.info,
        )


def load_study_data(
    dataset: str,
    model: str | None = None,
    hidden: tuple[int, ...] = (128,),
    data_dir: str | None = None,
    train_size: int | None = None,
    eval_size: int = 1000,
    seed: int = 0,
) -> StudyData:
    """Load a dataset the trainer knows as arrays; the errors name the bad value."""
    if dataset not in DATASETS:
        raise StudyError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    model = model or DEFAULT_MODEL[dataset]
    if model not in MODELS:
        raise StudyError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    try:
        train, test, info = load_dataset(dataset, data_dir, train_size, seed)
        build_model(model, info, hidden)  # fail now, not in the first run
    except (ValueError, OSError) as e:
        raise StudyError(str(e)) from None
    x, y = train[np.arange(len(train))]
    xt, yt = test[np.arange(min(len(test), eval_size))]
    return StudyData(dataset, model, tuple(hidden), x, y, xt, yt, x[:eval_size], y[:eval_size], info)


class BatchStream:
    """Batches of indices from consecutive seeded permutations of range(n), none dropped."""

    def __init__(self, n: int, batch: int, seed: int) -> None:
        self.n, self.batch = n, batch
        self.rng = np.random.default_rng(seed)
        self._order = self.rng.permutation(n)
        self._pos = 0

    def next(self) -> np.ndarray:
        parts, need = [], self.batch
        while need:
            if self._pos == self.n:
                self._order, self._pos = self.rng.permutation(self.n), 0
            take = min(need, self.n - self._pos)
            parts.append(self._order[self._pos : self._pos + take])
            self._pos += take
            need -= take
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def eval_steps(total: int) -> list[int]:
    """The steps after which accuracy is measured: each of the first 20, then 5% apart, and the last."""
    steps, s = [], 1
    while s < total:
        steps.append(s)
        s = s + 1 if s < EVAL_EVERY_STEP_UNTIL else max(s + 1, math.ceil(s * EVAL_SPACING))
    steps.append(total)
    return steps


def budget_steps(n: int, batch: int, epochs: float, min_steps: int) -> int:
    """A run's length: ``epochs`` passes over the data, but at least ``min_steps`` steps."""
    return max(math.ceil(epochs * n / batch), min_steps)


def accuracy(model: Any, x: np.ndarray, y: np.ndarray, chunk: int = 2048) -> float:
    correct = 0
    with minidl.no_grad():
        for i in range(0, len(y), chunk):
            correct += int((model(Tensor(x[i : i + chunk])).data.argmax(1) == y[i : i + chunk]).sum())
    return correct / len(y)


@dataclass
class RunSpec:
    """What distinguishes one run: recipe, global batch, learning rate, seed, width, data size."""

    recipe: str
    batch: int
    lr: float
    seed: int
    hidden: tuple[int, ...]
    train_size: int
    steps: int
    warmup_steps: int = 0
    measure_noise: bool = False
    sharpness: bool = True
    sweep: str = ""  # "" for the batch grid; "width" or "train-size" for the fixed-batch sweep
    comm_hook: str = "none"  # a communication hook spec; not "none": the batch is split over ``ranks`` virtual ranks
    ranks: int = 1

    @property
    def key(self) -> str:
        width = "x".join(map(str, self.hidden))
        where = f"{self.sweep or 'grid'}/{self.recipe}/B{self.batch}"
        hooked = "" if self.comm_hook == "none" else f"/hook={self.comm_hook}/p{self.ranks}"
        return f"{where}/lr{self.lr:.6g}/s{self.seed}/w{width}/n{self.train_size}{hooked}"


def run_label(spec: dict[str, Any]) -> str:
    """What a run is grouped and reported under: its recipe, plus its communication hook if it has one."""
    hook = spec.get("comm_hook", "none")
    return spec["recipe"] if hook == "none" else f"{spec['recipe']} + {hook} (p={spec['ranks']})"


@dataclass
class RunRecord:
    """Everything a run measured; ``curve`` is (step, test accuracy) at every evaluation."""

    spec: dict[str, Any]
    curve: list[tuple[int, float]]
    final_test_accuracy: float
    final_train_accuracy: float
    final_loss: float
    diverged: bool
    sharpness: float | None
    noise: list[tuple[int, float]] = field(default_factory=list)  # (step, B_simple)
    wall_seconds: float = 0.0
    wire_bytes_per_step: float | None = None  # with a communication hook: what a rank sent, mean over steps


def train_run(spec: RunSpec, recipe: Recipe, data: StudyData) -> RunRecord:
    """Train one model as ``spec`` says and record its accuracy curve (and optionally B_simple)."""
    start = time.perf_counter()
    data = data.subset(spec.train_size, spec.hidden)
    minidl.manual_seed(spec.seed)
    model = build_model(data.model, data.info, spec.hidden)
    params = list(model.parameters())
    opt = recipe.optimizer(params, spec.lr)
    stream = BatchStream(data.n, spec.batch, seed=spec.seed)
    noise_stream = BatchStream(data.n, spec.batch, seed=spec.seed + 10_000)
    noise = GradientNoiseScale(spec.batch, NOISE_RANKS * spec.batch, ema=0.9) if spec.measure_noise else None
    evals = set(eval_steps(spec.steps))
    curve: list[tuple[int, float]] = []
    noise_curve: list[tuple[int, float]] = []
    loss_value, diverged = math.nan, False
    hooked = HookedGradient(spec.comm_hook, spec.ranks, spec.batch) if spec.comm_hook != "none" else None
    wire = 0
    for step in range(1, spec.steps + 1):
        if spec.warmup_steps and step <= spec.warmup_steps:  # linear from lr/10 to lr
            factor = 0.1 + 0.9 * (step - 1) / spec.warmup_steps
            for group in opt.param_groups:
                group["lr"] = spec.lr * factor
        idx = stream.next()
        model.train()
        opt.zero_grad()
        if hooked is None:
            loss = F.cross_entropy(model(Tensor(data.x[idx])), Tensor(data.y[idx]))
            loss.backward()
        else:
            loss, sent = hooked.step(model, params, data.x[idx], data.y[idx], step - 1)
            wire += sent
        opt.step()
        loss_value = float(loss.item())
        if not math.isfinite(loss_value):
            diverged = True
            curve.append((step, accuracy(model, data.x_test, data.y_test)))
            break
        if step in evals:
            model.eval()
            curve.append((step, accuracy(model, data.x_test, data.y_test)))
            if noise is not None:
                noise.update(*_noise_norms(model, params, data, noise_stream))
                noise_curve.append((step, noise.b_simple))
    model.eval()
    sharp = None
    if spec.sharpness and not diverged:
        k = min(SHARPNESS_SAMPLES, len(data.y_train_eval))
        xs, ys = Tensor(data.x_train_eval[:k]), Tensor(data.y_train_eval[:k])
        sharp = top_hessian_eigenvalue(lambda: F.cross_entropy(model(xs), ys), params, iterations=20, seed=spec.seed)
    return RunRecord(
        spec=spec.__dict__ | {"key": spec.key, "hidden": list(spec.hidden)},
        curve=curve,
        final_test_accuracy=curve[-1][1],
        final_train_accuracy=accuracy(model, data.x_train_eval, data.y_train_eval),
        final_loss=loss_value,
        diverged=diverged,
        sharpness=sharp,
        noise=noise_curve,
        wall_seconds=time.perf_counter() - start,
        wire_bytes_per_step=wire / step if hooked is not None else None,
    )


class HookedGradient:
    """The averaged gradient as ``ranks`` data-parallel ranks with a communication hook would apply it.

    The batch is split into equal shares, each share's gradient is one virtual rank's bucket (all
    parameters, as DDP's default 25 MiB bucket holds the study's models), and the hook reduces
    them with one state per rank (:func:`minidl.distributed.local_group.reduce_with_hook`).
    """

    def __init__(self, spec: str, ranks: int, batch: int) -> None:
        if batch % ranks:
            raise StudyError(f"batch {batch} does not split evenly over --hook-ranks {ranks}")
        try:
            states_and_hooks = [make_comm_hook(spec) for _ in range(ranks)]
        except ValueError as e:
            raise StudyError(str(e)) from None
        self.states = [state for state, _ in states_and_hooks]
        self.hook = states_and_hooks[0][1]
        self.ranks = ranks

    def step(self, model: Any, params: list[Any], x: np.ndarray, y: np.ndarray, step: int) -> tuple[Any, int]:
        """Leave the hooked average in every ``p.grad``; returns (the mean loss, the bytes a rank sent)."""
        buffers, losses = [], []
        for xs, ys in zip(np.split(x, self.ranks), np.split(y, self.ranks)):
            loss = F.cross_entropy(model(Tensor(xs)), Tensor(ys))
            grads = minidl.grad(loss, params)
            buffers.append(np.concatenate([g.data.reshape(-1) for g in grads]))
            losses.append(float(loss.item()))
        result, sent = reduce_with_hook(self.hook, self.states, buffers, [p.shape for p in params], step)
        offset = 0
        for p in params:
            p.grad = Tensor(result[offset : offset + p.size].reshape(p.shape).copy())
            offset += p.size
        return Tensor(np.array(np.mean(losses))), sent


def _noise_norms(model: Any, params: list[Any], data: StudyData, stream: BatchStream) -> tuple[float, float]:
    """(mean |g_small|^2, |mean g_small|^2) over NOISE_RANKS batches: what DDP's ranks would see."""
    total = [np.zeros(p.shape) for p in params]
    small = 0.0
    for _ in range(NOISE_RANKS):
        idx = stream.next()
        loss = F.cross_entropy(model(Tensor(data.x[idx])), Tensor(data.y[idx]))
        grads = minidl.grad(loss, params)
        small += sum(float((g.data.astype(np.float64) ** 2).sum()) for g in grads)
        for t, g in zip(total, grads):
            t += g.data
    big = sum(float(((t / NOISE_RANKS) ** 2).sum()) for t in total)
    return small / NOISE_RANKS, big
