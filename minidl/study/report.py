"""report.md of a batch-scaling study: what ran, and the findings in words and numbers."""

from __future__ import annotations

import math
from typing import Any

from minidl.study.analysis import TARGET_FRACTION, measured_b_simple, sweep_table
from minidl.study.recipes import RECIPES
from minidl.study.training import EVAL_EVERY_STEP_UNTIL, NOISE_RANKS, SHARPNESS_SAMPLES


def _f(x: float | None, fmt: str = ".0f") -> str:
    return "-" if x is None or not math.isfinite(x) else format(x, fmt)


def _steps(x: float) -> str:
    return "not reached" if not math.isfinite(x) else f"{x:.0f}"


def headline(outcome: Any) -> list[str]:
    """The findings as sentences (also printed by the CLI)."""
    lines = []
    batches = sorted(outcome.config.batches)
    small, large = batches[0], batches[-1]
    noise = measured_b_simple(outcome.summaries)
    for s in outcome.summaries:
        if s.fit is not None:
            r = s.regimes
            lines.append(
                f"{s.recipe}: steps to {outcome.target:.2f}: {_steps(s.point(small).steps)} at B={small}, "
                f"{_steps(s.point(large).steps)} at B={large}; fitted critical batch B_crit = {s.fit.b_crit:.0f} "
                f"(S_min = {s.fit.s_min:.0f} steps, E_min = {s.fit.e_min:.0f} samples); perfect scaling up to "
                f"B={_f(r.perfect_until)}, maximal data parallelism from B={_f(r.maximal_from)}."
            )
        else:
            lines.append(f"{s.recipe}: {'; '.join(s.notes)}.")
    if noise is not None:
        lines.append(
            f"Gradient noise scale measured during training (B={noise[1]}, {noise[2]}, at the step the target was "
            f"reached): B_simple = {noise[0]:.0f}, the predicted critical batch."
        )
    acc = []
    for s in outcome.summaries:
        a, b = s.point(small), s.point(large)
        if a and b:
            acc.append(
                f"{s.recipe} {a.final_accuracy:.3f} -> {b.final_accuracy:.3f} "
                f"({100 * (b.final_accuracy - a.final_accuracy):+.1f} pts)"
            )
    if acc:
        lines.append(f"Final test accuracy from B={small} to B={large}: " + "; ".join(acc) + ".")
    base = outcome.summaries[0].point(large) if outcome.summaries else None
    for s in outcome.summaries[1:]:
        p = s.point(large)
        if base and p:
            lines.append(
                f"At B={large}, {s.recipe} vs {outcome.summaries[0].recipe}: "
                f"{100 * (p.final_accuracy - base.final_accuracy):+.1f} "
                f"accuracy points, steps to target {_steps(p.steps)} vs {_steps(base.steps)}."
            )
    sharp = []
    for s in outcome.summaries:
        a, b = s.point(small), s.point(large)
        if a and b and a.sharpness is not None and b.sharpness is not None:
            sharp.append(f"{s.recipe} {a.sharpness:.3g} at B={small} vs {b.sharpness:.3g} at B={large}")
    if sharp:
        lines.append("Sharpness (top Hessian eigenvalue of the training loss at the end): " + "; ".join(sharp) + ".")
    return lines


def write_report(outcome: Any) -> None:
    c = outcome.config
    d = outcome.data
    recipes = [RECIPES[r] for r in c.recipes]
    target_how = (
        "given with --target"
        if c.target is not None
        else f"chosen automatically: {int(100 * TARGET_FRACTION)}% of the smallest batch's best median final accuracy "
        f"with {c.recipes[0]}, rounded down"
    )
    text = [
        f"# Batch-scaling study: {d.model} on {d.dataset}",
        "",
        "## What was run",
        "",
        f"- Data: {d.dataset}, {d.n} training samples; accuracy measured on {len(d.y_test)} test samples "
        f"(train accuracy on {len(d.y_train_eval)} training samples). Model {d.model}"
        + (f", hidden widths {list(c.hidden)}" if d.model == "mlp" else "")
        + ".",
        f"- Global batch sizes: {sorted(c.batches)}. Every run trains in one process: a global batch B on one "
        "process is the same update as p data-parallel ranks with B/p samples each (the averaged gradient is the "
        "gradient of the averaged loss), so the step counts are those a cluster would see.",
        "- Recipes: " + "; ".join(f"**{r.name}**: {r.summary}" for r in recipes) + ".",
        f"- Learning rates: at every batch, {c.lr_points} rates spaced x{c.lr_spacing:g} around each recipe's rule "
        "(base rate at batch 8 scaled linearly or by sqrt(B/8)); the rate with the fewest median steps to the "
        f"target is kept (Shallue et al. 2019). Seeds per point: {c.seeds}; error bars show their min and max.",
        f"- Budget: {c.epochs:g} epochs or {c.min_steps} steps, whichever is more. Warmup (where the recipe has it): "
        f"linear from lr/10 over max({c.warmup_epochs:g} epoch, 10 steps), at most a quarter of the run.",
        f"- Evaluation: test accuracy after every step up to {EVAL_EVERY_STEP_UNTIL}, then at steps 5% apart "
        "(steps to target are known to within 5%). Batches are drawn from consecutive seeded permutations of the "
        "training set, so no sample is dropped and an epoch is exactly one pass.",
        f"- Target accuracy: **{outcome.target:.2f}** ({target_how}).",
        f"- Gradient noise scale B_simple: estimated in the seed-0 runs at one batch B from {NOISE_RANKS} "
        f"independent batches of B per evaluation (as {NOISE_RANKS} data-parallel ranks would see them), with "
        "the unbiased estimators of McCandlish et al. (2018) and a moving average.",
        f"- Sharpness: top eigenvalue of the training-loss Hessian on {SHARPNESS_SAMPLES} training samples at the "
        "end of every run, by 20 power iterations on Hessian-vector products (Keskar et al. 2017).",
        f"- Runs: {len(outcome.records)} in total ({outcome.new_runs} run now, {outcome.skipped} kept from before); "
        f"{sum(r.wall_seconds for r in outcome.records):.0f} s of training.",
        "",
        "## Findings",
        "",
        *[f"- {line}" for line in headline(outcome)],
        "",
        "## Per batch (best learning rate)",
        "",
    ]
    for s in outcome.summaries:
        text += [
            f"### {s.recipe}",
            "",
            "| batch | best lr | steps to target (median, min-max) | epochs | reached | final test acc | train acc "
            "| gap | sharpness | regime |",
            "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for p in s.points:
            regime = s.regimes.label(p.batch) if s.regimes and math.isfinite(p.steps) else "-"
            steps = (
                "not reached" if not math.isfinite(p.steps) else f"{p.steps:.0f} ({p.steps_min:.0f}-{p.steps_max:.0f})"
            )
            text.append(
                f"| {p.batch} | {_f(p.lr, '.3g')} | {steps} | {_f(p.epochs, '.2f')} | {p.reached}/{p.seeds} | "
                f"{p.final_accuracy:.3f} | {p.train_accuracy:.3f} | {p.gap:+.3f} | {_f(p.sharpness, '.3g')} "
                f"| {regime} |"
            )
        text.append("")
    for kind, rows in sweep_table(outcome.records).items():
        text += [
            f"## Sweep of {kind} at batch {c.sweep_batch or min(c.batches)} ({c.recipes[0]}, centre learning rate)",
            "",
            f"| {kind} | train acc | test acc | gap |",
            "| ---: | ---: | ---: | ---: |",
            *[f"| {r['value']} | {r['train']:.3f} | {r['test']:.3f} | {r['gap']:+.3f} |" for r in rows],
            "",
        ]
    text += [
        "## Files",
        "",
        "- `results.csv`, `results.json`: one row per run (steps and epochs to target empty/null when not reached).",
        "- `runs.jsonl`: the raw runs with their accuracy curves (what `--resume` reads).",
        *[f"- `{p.name}`" for p in outcome.files],
        "",
    ]
    (outcome.out / "report.md").write_text("\n".join(text))
