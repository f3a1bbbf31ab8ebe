"""``batch-scaling``: steps to a target accuracy against the global batch, per recipe, tuned per batch.

Every (recipe, batch, learning rate, seed) is one in-process run (see :mod:`minidl.study.training`
for why one process stands for p ranks). Runs are appended to the study directory as they
finish, so an interrupted study keeps them and ``resume=True`` skips them; the tables, plots and
report are rebuilt from whatever runs are there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minidl.study.analysis import RecipeSummary, choose_target, summarize
from minidl.study.errors import StudyError
from minidl.study.recipes import Recipe, get_recipes
from minidl.study.results import append_run, read_config, read_runs, write_config, write_tables
from minidl.study.training import RunRecord, RunSpec, StudyData, budget_steps, load_study_data, train_run

# What a resumed study must share with the stored one (the grid itself may grow).
IDENTITY = ("dataset", "model", "hidden", "train_size", "eval_size", "epochs", "min_steps", "warmup_epochs")


@dataclass
class StudyConfig:
    """Everything that defines a batch-scaling study (stored as study.json)."""

    dataset: str = "digits"
    model: str | None = None
    hidden: tuple[int, ...] = (128,)
    data_dir: str | None = None
    train_size: int | None = None
    eval_size: int = 1000
    batches: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512, 1024)
    recipes: tuple[str, ...] = ("sgd", "momentum")
    lr_points: int = 3
    lr_spacing: float = 2.0
    seeds: int = 3
    epochs: float = 10.0
    min_steps: int = 200
    warmup_epochs: float = 0.5
    target: float | None = None
    noise_batch: int | None = None
    sharpness: bool = True
    sweep: str | None = None  # "width=16,64,256" or "train-size=200,800"
    sweep_batch: int | None = None
    comm_hooks: tuple[str, ...] = ("none",)  # each recipe also runs with these hooks (canonical specs) ...
    hook_ranks: int = 4  # ... on this many virtual ranks

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["hidden"], d["batches"], d["recipes"] = list(self.hidden), list(self.batches), list(self.recipes)
        d["comm_hooks"] = list(self.comm_hooks)
        return d


QUICK = dict(batches=(16, 64, 256), lr_points=2, seeds=1, epochs=3.0, min_steps=60)


@dataclass
class StudyOutcome:
    out: Path
    config: StudyConfig
    records: list[RunRecord]
    target: float
    summaries: list[RecipeSummary]
    data: StudyData
    new_runs: int = 0
    skipped: int = 0
    files: list[Path] = field(default_factory=list)


def parse_sweep(text: str) -> tuple[str, list[Any]]:
    """ "width=16,64,256" or "train-size=200,800" into (kind, values)."""
    kind, _, values = text.partition("=")
    kind = kind.strip()
    if kind not in ("width", "train-size") or not values:
        raise StudyError(f"--sweep {text!r}: expected width=W1,W2,... or train-size=N1,N2,...")
    try:
        parsed = [int(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise StudyError(f"--sweep {text!r}: the values must be integers") from None
    if not parsed or min(parsed) < 1:
        raise StudyError(f"--sweep {text!r}: the values must be positive integers")
    return kind, parsed


def check_batches(batches: tuple[int, ...], n: int, dataset: str) -> None:
    """Every batch must be a positive size the training set can fill at least once."""
    if not batches:
        raise StudyError("no batch sizes given")
    for b in batches:
        if b < 1:
            raise StudyError(f"batch size {b} must be at least 1")
        if b > n:
            raise StudyError(
                f"batch size {b} is larger than the {n} training samples of {dataset}: "
                "one step would see samples twice; use batches up to the training-set size"
            )


def plan_runs(config: StudyConfig, recipes: list[Recipe], data: StudyData) -> list[RunSpec]:
    """Every run of the study, the smallest batch first (the automatic target is chosen from it)."""
    noise_batch = config.noise_batch or (32 if 32 in config.batches else min(config.batches))
    specs = []
    for batch in sorted(config.batches):
        for recipe in recipes:
            for lr in recipe.lr_grid(batch, config.lr_points, config.lr_spacing):
                for seed in range(config.seeds):
                    specs.append(_spec(config, recipe, batch, lr, seed, data.n, config.hidden, noise_batch))
                    for hook in config.comm_hooks:
                        if hook != "none":
                            spec = _spec(config, recipe, batch, lr, seed, data.n, config.hidden, None)
                            spec.comm_hook, spec.ranks = hook, config.hook_ranks
                            specs.append(spec)
    if config.sweep:
        kind, values = parse_sweep(config.sweep)
        batch = config.sweep_batch or min(config.batches)
        recipe = recipes[0]
        for value in values:
            hidden = (value,) * len(config.hidden) if kind == "width" else config.hidden
            n = value if kind == "train-size" else data.n
            if n > data.n:
                raise StudyError(f"--sweep train-size={value} exceeds the {data.n} training samples")
            if batch > n:
                raise StudyError(f"--sweep-batch {batch} is larger than the swept train size {n}")
            for seed in range(config.seeds):
                spec = _spec(config, recipe, batch, recipe.center_lr(batch), seed, n, hidden, None)
                spec.sweep = kind
                specs.append(spec)
    return specs


def _spec(
    config: StudyConfig,
    recipe: Recipe,
    batch: int,
    lr: float,
    seed: int,
    n: int,
    hidden: tuple[int, ...],
    noise: int | None,
) -> RunSpec:
    steps = budget_steps(n, batch, config.epochs, config.min_steps)
    warmup = min(max(round(config.warmup_epochs * n / batch), 10), steps // 4) if recipe.warmup else 0
    return RunSpec(
        recipe=recipe.name,
        batch=batch,
        lr=float(f"{lr:.6g}"),
        seed=seed,
        hidden=tuple(hidden),
        train_size=n,
        steps=steps,
        warmup_steps=warmup,
        measure_noise=batch == noise and seed == 0,
        sharpness=config.sharpness,
    )


def _check_resume(out: Path, config: StudyConfig, resume: bool) -> None:
    has_runs = (out / "runs.jsonl").exists() and (out / "runs.jsonl").stat().st_size > 0
    if not resume:
        if has_runs:
            raise StudyError(
                f"{out} already holds a study's runs; pass --resume to continue it, or choose another --out"
            )
        return
    if not (out / "study.json").exists():
        return  # nothing to resume: start fresh
    stored = read_config(out)
    mine = config.as_dict()
    differ = [k for k in IDENTITY if stored.get(k) != mine.get(k)]
    if differ:
        what = ", ".join(f"{k} {stored.get(k)!r} -> {mine.get(k)!r}" for k in differ)
        raise StudyError(f"--resume: {out} was run with other settings ({what}); use another --out")


def run_study(
    config: StudyConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> StudyOutcome:
    """Run (or finish) the study in ``out`` and write its tables, plots and report."""
    out = Path(out)
    recipes = get_recipes(config.recipes)
    data = load_study_data(
        config.dataset, config.model, config.hidden, config.data_dir, config.train_size, config.eval_size
    )
    config.model = data.model
    check_batches(tuple(config.batches), data.n, config.dataset)
    if any(h != "none" for h in config.comm_hooks):
        uneven = [b for b in config.batches if b % config.hook_ranks]
        if config.hook_ranks < 1 or uneven:
            raise StudyError(
                f"--hook-ranks {config.hook_ranks} must be at least 1 and divide every batch (not {uneven})"
            )
    if config.target is not None and not 0 < config.target <= 1:
        raise StudyError(f"--target {config.target} must be an accuracy in (0, 1]")
    specs = plan_runs(config, recipes, data)
    _check_resume(out, config, resume)
    write_config(out, config.as_dict())
    records = read_runs(out)
    done = {r.spec["key"] for r in records}
    todo = [s for s in specs if s.key not in done]
    by_name = {r.name: r for r in recipes}
    bar = _progress(todo, progress)
    new = 0
    try:
        for spec in bar:
            if hasattr(bar, "set_postfix_str"):
                bar.set_postfix_str(f"{spec.recipe} B={spec.batch} lr={spec.lr:.3g} seed={spec.seed}")
            record = train_run(spec, by_name[spec.recipe], data)
            append_run(out, record)
            records.append(record)
            new += 1
    except KeyboardInterrupt:
        if hasattr(bar, "close"):
            bar.close()
        say(f"interrupted: {len(records)} finished run(s) kept in {out}; rerun with --resume to finish the rest")
        raise
    return finish(out, config, records, data, new, len(specs) - len(todo))


def finish(
    out: Path, config: StudyConfig, records: list[RunRecord], data: StudyData, new: int = 0, skipped: int = 0
) -> StudyOutcome:
    """Tables, analysis, plots and report from the runs in ``out``."""
    from minidl.study import plots, report

    smallest = min(config.batches)
    primary = config.recipes[0]
    target = config.target if config.target is not None else choose_target(records, smallest, primary)
    write_tables(out, records, target)
    summaries = summarize(records, target, data.n)
    outcome = StudyOutcome(out, config, records, target, summaries, data, new, skipped)
    outcome.files = plots.study_plots(outcome)
    report.write_report(outcome)
    first = next(s for s in summaries if s.recipe == primary)
    point = first.point(smallest)
    if point is None or not math.isfinite(point.steps):
        raise StudyError(
            f"target accuracy {target} was never reached by the smallest batch {smallest} with {primary} "
            f"(best final accuracy {point.final_accuracy if point else float('nan'):.3f}); "
            f"results are kept in {out}: lower --target"
        )
    return outcome


def _progress(items: list[Any], enabled: bool) -> Any:
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc="batch-scaling runs", unit="run", dynamic_ncols=True)
