"""The study's run mechanics: batches cover the data once per epoch, evaluation steps, budgets, recipes."""

import numpy as np
import pytest

from minidl.study.errors import StudyError
from minidl.study.recipes import RECIPES, get_recipes
from minidl.study.training import BatchStream, budget_steps, eval_steps


@pytest.mark.parametrize("n, batch", [(10, 3), (10, 10), (7, 4), (1438, 1024)])
def test_batch_stream_sees_every_sample_once_per_epoch(n, batch):
    stream = BatchStream(n, batch, seed=0)
    epochs = 3
    seen = np.concatenate([stream.next() for _ in range(epochs * n // batch + 1)])
    for e in range(epochs):
        assert sorted(seen[e * n : (e + 1) * n]) == list(range(n))


def test_eval_steps_every_step_then_five_percent_apart():
    steps = eval_steps(200)
    assert steps[:20] == list(range(1, 21))
    assert steps[-1] == 200
    later = np.array(steps[20:-1], dtype=float)
    gaps = later[1:] / later[:-1]
    assert np.all(gaps >= 1.0) and np.all(gaps <= 1.05 + 1 / 20)
    assert eval_steps(3) == [1, 2, 3]


def test_budget_is_epochs_but_at_least_min_steps():
    assert budget_steps(1000, 10, 2, 50) == 200
    assert budget_steps(1000, 500, 2, 50) == 50


def test_recipe_grids_follow_their_scaling_rule():
    m, s = RECIPES["momentum"], RECIPES["sgd"]
    assert m.center_lr(64) == pytest.approx(m.base_lr * 8)
    assert s.center_lr(32) == pytest.approx(s.base_lr * 2)
    grid = m.lr_grid(16, 3, 2.0)
    assert grid == pytest.approx([m.base_lr, 2 * m.base_lr, 4 * m.base_lr])


def test_unknown_recipe_is_named():
    with pytest.raises(StudyError, match="unknown recipe 'adamw'"):
        get_recipes("sgd,adamw")
    assert [r.name for r in get_recipes("lars, lamb")] == ["lars", "lamb"]


def test_sweep_adds_runs_at_a_fixed_batch_and_rejects_bad_values():
    from minidl.study.batch_scaling import StudyConfig, parse_sweep, plan_runs
    from minidl.study.training import load_study_data

    data = load_study_data("digits")
    config = StudyConfig(batches=(16, 64), recipes=("sgd",), lr_points=1, seeds=2, sweep="width=8,32", sweep_batch=64)
    specs = plan_runs(config, get_recipes("sgd"), data)
    sweep = [s for s in specs if s.sweep == "width"]
    assert len(specs) == 2 * 2 + 2 * 2 and len(sweep) == 4
    assert {s.hidden for s in sweep} == {(8,), (32,)} and {s.batch for s in sweep} == {64}
    assert parse_sweep("train-size=100,200") == ("train-size", [100, 200])
    for bad in ("depth=3", "width=", "width=a", "width=0"):
        with pytest.raises(StudyError, match="--sweep"):
            parse_sweep(bad)
    too_big = StudyConfig(batches=(16,), recipes=("sgd",), sweep="train-size=5000")
    with pytest.raises(StudyError, match="exceeds the 1438 training samples"):
        plan_runs(too_big, get_recipes("sgd"), data)
