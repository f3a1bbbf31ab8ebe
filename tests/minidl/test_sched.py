"""Learning-rate schedules: closed forms, composition, the linear scaling rule, state round trips."""

import math

import numpy as np
import pytest

from minidl import nn, optim
from minidl.optim import lr_scheduler as S


def opt(lr=1.0, groups=1):
    params = [nn.Parameter(np.zeros(1)) for _ in range(groups)]
    return optim.SGD([{"params": [p], "lr": lr * (i + 1)} for i, p in enumerate(params)], lr=lr)


def lrs(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.get_last_lr()[0])
        sched.step()
    return out


def test_step_and_multistep():
    assert lrs(S.StepLR(opt(), step_size=2, gamma=0.5), 6) == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert lrs(S.MultiStepLR(opt(), milestones=[3, 1], gamma=0.1), 5) == pytest.approx([1, 0.1, 0.1, 0.01, 0.01])
    assert lrs(S.ExponentialLR(opt(), 0.5), 3) == [1, 0.5, 0.25]


def test_linear_warmup_goyal_recipe():
    # reference: lr 0.1 for batch 256; 8 workers x 256 -> k = 8, target 0.8 reached after warmup
    target = S.linear_scaling_rule(0.1, global_batch=2048, base_batch=256)
    assert target == pytest.approx(0.8)
    o = opt(lr=target)
    sched = S.LinearWarmup(o, warmup_steps=4, start_factor=1 / 8)
    got = lrs(sched, 6)
    assert got == pytest.approx([0.1, 0.275, 0.45, 0.625, 0.8, 0.8])
    assert o.param_groups[0]["lr"] == pytest.approx(0.8)


def test_cosine_closed_form_and_eta_min():
    sched = S.CosineAnnealingLR(opt(2.0), T_max=4, eta_min=0.5)
    expected = [0.5 + 1.5 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)]
    assert lrs(sched, 5) == pytest.approx(expected)


def test_warmup_then_cosine():
    sched = S.warmup_cosine(opt(1.0), warmup_steps=2, total_steps=6, start_factor=0.5)
    got = lrs(sched, 7)
    cos = [(1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)]
    assert got == pytest.approx([0.5, 0.75, *cos])


def test_each_group_scales_its_own_base_lr():
    o = opt(1.0, groups=2)
    sched = S.StepLR(o, 1, gamma=0.5)
    sched.step()
    assert sched.get_last_lr() == [0.5, 1.0]
    assert [g["initial_lr"] for g in o.param_groups] == [1.0, 2.0]


def test_chained_multiplies_factors():
    o = opt(1.0)
    sched = S.ChainedScheduler([S.LinearLR(o, 0.5, 1.0, 2), S.StepLR(o, 3, 0.1)])
    assert lrs(sched, 5) == pytest.approx([0.5, 0.75, 1.0, 0.1, 0.1])


def test_lambda():
    sched = S.LambdaLR(opt(2.0), lambda t: 1 / (t + 1))
    assert lrs(sched, 3) == pytest.approx([2, 1, 2 / 3])
    assert "_fns" not in sched.state_dict()


@pytest.mark.parametrize(
    "build",
    [
        lambda o: S.StepLR(o, 3, 0.5),
        lambda o: S.warmup_cosine(o, 3, 10, 0.1),
        lambda o: S.ChainedScheduler([S.LinearLR(o, 0.2, 1.0, 4), S.MultiStepLR(o, [5, 7])]),
    ],
)
def test_state_dict_resumes_exactly(build):
    o1 = opt(0.3)
    s1 = build(o1)
    lrs(s1, 4)
    saved = s1.state_dict()
    o2 = opt(0.3)
    s2 = build(o2)
    s2.load_state_dict(saved)
    assert o2.param_groups[0]["lr"] == o1.param_groups[0]["lr"]
    assert lrs(s1, 8) == lrs(s2, 8)


def test_validation():
    o = opt()
    with pytest.raises(ValueError, match="one milestone fewer"):
        S.SequentialLR(o, [S.StepLR(o, 1)], milestones=[3])
    with pytest.raises(ValueError, match="optimizer given to SequentialLR"):
        S.SequentialLR(o, [S.StepLR(o, 1), S.StepLR(opt(), 1)], milestones=[3])
    with pytest.raises(ValueError, match="total_iters"):
        S.LinearLR(o, total_iters=0)
    with pytest.raises(ValueError, match="batch sizes"):
        S.linear_scaling_rule(0.1, 0)
    with pytest.raises(KeyError, match="initial_lr"):
        S.StepLR(opt(), 1, last_epoch=5)
