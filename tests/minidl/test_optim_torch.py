"""PyTorch parity for optimizers and schedules: same parameters, same gradients, several steps.
Skipped without torch."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import minidl  # noqa: E402
from minidl import nn, optim  # noqa: E402
from minidl.optim import lr_scheduler as S  # noqa: E402

SHAPES = [(3, 4), (4,), (2, 2, 3)]
STEPS = 6


def grads(step):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(s) for s in SHAPES]


def run_pair(torch_cls, minidl_cls, torch_kw, minidl_kw=None, groups=False, dtype=np.float64):
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    tp = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    mp = [nn.Parameter(a.copy()) for a in init]
    if groups:  # a second group with its own learning rate
        topt = torch_cls([{"params": tp[:2]}, {"params": tp[2:], "lr": 0.05}], **torch_kw)
        mopt = minidl_cls([{"params": mp[:2]}, {"params": mp[2:], "lr": 0.05}], **(minidl_kw or torch_kw))
    else:
        topt = torch_cls(tp, **torch_kw)
        mopt = minidl_cls(mp, **(minidl_kw or torch_kw))
    for step in range(STEPS):
        for t, m, g in zip(tp, mp, grads(step)):
            t.grad = torch.tensor(g.astype(dtype))
            m.grad = minidl.tensor(g.astype(dtype))
        topt.step()
        mopt.step()
    return [t.detach().numpy() for t in tp], [m.data for m in mp]


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("SGD", dict(lr=0.1, momentum=0.5, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3, amsgrad=True)),
]


@pytest.mark.parametrize("name, kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
@pytest.mark.parametrize("groups", [False, True])
def test_matches_torch_in_float64(name, kw, groups):
    expected, got = run_pair(getattr(torch.optim, name), getattr(optim, name), kw, groups=groups)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, kw", [CASES[3], CASES[6], CASES[9]])
def test_matches_torch_in_float32(name, kw):
    expected, got = run_pair(getattr(torch.optim, name), getattr(optim, name), kw, dtype=np.float32)
    for e, g in zip(expected, got):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def lr_trace(sched, opt, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def torch_and_minidl(build_torch, build_minidl, n=25):
    tp = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.4)
    mopt = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.4)
    return lr_trace(build_torch(topt), topt, n), lr_trace(build_minidl(mopt), mopt, n)


TS = torch.optim.lr_scheduler
SCHEDULES = {
    "linear": (lambda o: TS.LinearLR(o, 0.1, 1.0, 7), lambda o: S.LinearLR(o, 0.1, 1.0, 7)),
    "step": (lambda o: TS.StepLR(o, 4, 0.5), lambda o: S.StepLR(o, 4, 0.5)),
    "multistep": (lambda o: TS.MultiStepLR(o, [3, 10, 11], 0.3), lambda o: S.MultiStepLR(o, [3, 10, 11], 0.3)),
    "exponential": (lambda o: TS.ExponentialLR(o, 0.9), lambda o: S.ExponentialLR(o, 0.9)),
    "cosine": (lambda o: TS.CosineAnnealingLR(o, 20, 0.01), lambda o: S.CosineAnnealingLR(o, 20, 0.01)),
    "warmup+cosine": (
        lambda o: TS.SequentialLR(o, [TS.LinearLR(o, 0.25, 1.0, 5), TS.CosineAnnealingLR(o, 15)], milestones=[5]),
        lambda o: S.SequentialLR(o, [S.LinearLR(o, 0.25, 1.0, 5), S.CosineAnnealingLR(o, 15)], milestones=[5]),
    ),
    "chained": (
        lambda o: TS.ChainedScheduler([TS.LinearLR(o, 0.5, 1.0, 4), TS.StepLR(o, 6, 0.5)]),
        lambda o: S.ChainedScheduler([S.LinearLR(o, 0.5, 1.0, 4), S.StepLR(o, 6, 0.5)]),
    ),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedules_match_torch(name):
    expected, got = torch_and_minidl(*SCHEDULES[name])
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)
