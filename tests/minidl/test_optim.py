"""Optimizers against hand-computed references on tiny problems; groups; state_dict round trips."""

import math

import numpy as np
import pytest

import minidl
from minidl import nn, optim
from minidl.nn.utils import clip_grad_norm_, clip_grad_value_


def param(values):
    return nn.Parameter(np.array(values, dtype=np.float64))


def run(opt, params, grads_per_step):
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            p.grad = minidl.tensor(np.array(g, dtype=np.float64))
        opt.step()


GRADS = [[0.5, -1.0], [0.25, 2.0], [-1.0, 0.5], [0.0, 1.0]]


@pytest.mark.parametrize(
    "momentum, dampening, nesterov, wd",
    [(0.0, 0.0, False, 0.0), (0.9, 0.0, False, 0.0), (0.9, 0.5, False, 0.1), (0.8, 0.0, True, 0.01)],
)
def test_sgd_matches_hand_computation(momentum, dampening, nesterov, wd):
    p = param([1.0, -2.0])
    opt = optim.SGD([p], lr=0.1, momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=wd)
    run(opt, [p], [[g] for g in GRADS])
    w = [1.0, -2.0]
    for j in range(2):
        buf = None
        for step_grads in GRADS:
            g = step_grads[j] + wd * w[j]
            if momentum:
                buf = g if buf is None else momentum * buf + (1 - dampening) * g
                g = g + momentum * buf if nesterov else buf
            w[j] -= 0.1 * g
    np.testing.assert_allclose(p.data, w, rtol=1e-13)


def test_sgd_maximize_and_validation():
    p = param([1.0])
    run(optim.SGD([p], lr=0.5, maximize=True), [p], [[[2.0]]])
    assert p.data[0] == 2.0
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD([p], lr=-1)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        optim.SGD([{"params": [p], "betas": (0.9, 0.9)}], lr=0.1)


def adam_reference(w0, grads, lr, b1, b2, eps, wd, decoupled, amsgrad=False):
    """Textbook Adam/AdamW (Kingma and Ba, Algorithm 1), one scalar at a time."""
    w, m, v, vmax = w0, 0.0, 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        if decoupled:
            w *= 1 - lr * wd
        else:
            g = g + wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = max(vmax, v)
        mhat = m / (1 - b1**t)
        vhat = (vmax if amsgrad else v) / (1 - b2**t)
        w -= lr * mhat / (math.sqrt(vhat) + eps)
    return w


@pytest.mark.parametrize(
    "cls, wd, amsgrad", [(optim.Adam, 0.0, False), (optim.Adam, 0.1, True), (optim.AdamW, 0.1, False)]
)
def test_adam_family_matches_textbook(cls, wd, amsgrad):
    p = param([1.0, -2.0])
    opt = cls([p], lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=wd, amsgrad=amsgrad)
    run(opt, [p], [[g] for g in GRADS])
    for j, w0 in enumerate([1.0, -2.0]):
        ref = adam_reference(w0, [g[j] for g in GRADS], 0.01, 0.8, 0.95, 1e-6, wd, cls is optim.AdamW, amsgrad)
        assert p.data[j] == pytest.approx(ref, rel=1e-12)
    assert opt.state[id(p)]["step"] == 4


def test_adam_first_step_is_lr_times_sign():
    p = param([1.0, 1.0, 1.0])
    run(optim.Adam([p], lr=0.1, eps=0.0), [p], [[[3.0, -0.001, 1e4]]])
    np.testing.assert_allclose(p.data, [0.9, 1.1, 0.9], rtol=1e-14)


def test_lars_trust_ratio_by_hand():
    w = param([[3.0, 4.0]])  # a (1, 2) weight matrix, ||w|| = 5
    b = param([1.0])  # a bias: excluded from adaptation and weight decay
    opt = optim.LARS([w, b], lr=1.0, momentum=0.9, weight_decay=0.5, eta=0.1)
    run(opt, [w, b], [[[[0.6, 0.8]], [0.5]]])  # ||g|| = 1
    # local lr = 0.1 * 5 / (1 + 0.5 * 5) = 1/7; v = 1/7 * (g + 0.5 w) = [0.3, 0.4]
    np.testing.assert_allclose(w.data, [[2.7, 3.6]], rtol=1e-14)
    assert b.data[0] == 0.5
    run(opt, [w, b], [[[[0.6, 0.8]], [0.5]]])
    wn = math.hypot(2.7, 3.6)  # 4.5
    local = 0.1 * wn / (1 + 0.5 * wn)
    v = [0.9 * 0.3 + local * (0.6 + 0.5 * 2.7), 0.9 * 0.4 + local * (0.8 + 0.5 * 3.6)]
    np.testing.assert_allclose(w.data, [[2.7 - v[0], 3.6 - v[1]]], rtol=1e-14)
    assert b.data[0] == pytest.approx(0.5 - (0.9 * 0.5 + 0.5))


def test_lars_zero_weights_use_ratio_one_and_exclusion_can_be_disabled():
    w = param([[0.0, 0.0]])
    run(optim.LARS([w], lr=0.1, momentum=0.0), [w], [[[[1.0, -1.0]]]])
    np.testing.assert_allclose(w.data, [[-0.1, 0.1]])
    b = param([2.0])
    run(optim.LARS([b], lr=1.0, momentum=0.0, eta=0.5, exclude_bias_and_norm=False), [b], [[[4.0]]])
    assert b.data[0] == pytest.approx(2.0 - 0.5 * 2 / 4 * 4)


def test_lamb_by_hand():
    w = param([[3.0, 4.0]])
    opt = optim.LAMB([w], lr=0.01, eps=0.0)
    run(opt, [w], [[[[0.6, -0.8]]]])
    # first step: update = g / |g| = [1, -1]; trust ratio = ||w|| / ||u|| = 5 / sqrt(2)
    step = 0.01 * 5 / math.sqrt(2)
    np.testing.assert_allclose(w.data, [[3.0 - step, 4.0 + step]], rtol=1e-14)
    b = param([3.0, 4.0])  # 1-D: excluded, a plain Adam step of lr * sign(g)
    run(optim.LAMB([b], lr=0.01, eps=0.0), [b], [[[0.6, -0.8]]])
    np.testing.assert_allclose(b.data, [2.99, 4.01], rtol=1e-14)


def lamb_reference(w0, grads, lr, b1, b2, eps, wd):
    w = np.array(w0, dtype=np.float64)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        g = np.array(g)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        r = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        u = r + wd * w
        w = w - lr * np.linalg.norm(w) / np.linalg.norm(u) * u
    return w


def test_lamb_several_steps_with_weight_decay():
    w = param([[1.0, -2.0], [0.5, 3.0]])
    opt = optim.LAMB([w], lr=0.05, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.1)
    grads = [[[0.5, -1.0], [0.1, 0.2]], [[0.25, 2.0], [-0.3, 0.0]], [[-1.0, 0.5], [0.2, -0.1]]]
    run(opt, [w], [[g] for g in grads])
    np.testing.assert_allclose(w.data, lamb_reference([[1.0, -2.0], [0.5, 3.0]], grads, 0.05, 0.9, 0.99, 1e-6, 0.1))


def test_param_groups_have_their_own_hyperparameters():
    a, b = param([1.0]), param([1.0])
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.0)
    run(opt, [a, b], [[[1.0], [1.0]]])
    assert a.data[0] == pytest.approx(0.9) and b.data[0] == pytest.approx(0.5)
    c = param([1.0])
    opt.add_param_group({"params": [c], "lr": 1.0})
    assert opt.param_groups[2]["momentum"] == 0.0


def test_parameters_without_grad_are_skipped():
    a, b = param([1.0]), param([1.0])
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = minidl.tensor(np.array([1.0]))
    opt.step()
    assert b.data[0] == 1.0 and id(b) not in opt.state


def make(cls, **kw):
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    head = list(model.parameters())[2:]
    body = list(model.parameters())[:2]
    opt = cls([{"params": body}, {"params": head, "lr": 0.05}], **kw)
    return model, opt


OPTIMIZERS = [
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (optim.Adam, dict(lr=0.01, amsgrad=True)),
    (optim.AdamW, dict(lr=0.01)),
    (optim.LARS, dict(lr=0.5, weight_decay=1e-3)),
    (optim.LAMB, dict(lr=0.01, weight_decay=0.01)),
]


def train_steps(model, opt, n, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = minidl.tensor(rng.standard_normal((5, 3)))
        loss = (model(x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("cls, kw", OPTIMIZERS, ids=[c.__name__ for c, _ in OPTIMIZERS])
def test_state_dict_round_trip_continues_identically(cls, kw):
    m1, o1 = make(cls, **kw)
    train_steps(m1, o1, 3, seed=1)
    m2, o2 = make(cls, **kw)
    m2.load_state_dict(m1.state_dict())
    o2.load_state_dict(o1.state_dict())
    assert o2.param_groups[1]["lr"] == 0.05
    train_steps(m1, o1, 3, seed=2)
    train_steps(m2, o2, 3, seed=2)
    for (n, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=n)


def test_state_dict_is_a_copy_and_has_pytorch_layout():
    m, o = make(optim.SGD, lr=0.1, momentum=0.9)
    train_steps(m, o, 1, seed=0)
    sd = o.state_dict()
    assert sorted(sd) == ["param_groups", "state"]
    assert sd["param_groups"][0]["params"] == [0, 1] and sd["param_groups"][1]["params"] == [2, 3]
    assert sorted(sd["state"]) == [0, 1, 2, 3]
    before = sd["state"][0]["momentum_buffer"].copy()
    train_steps(m, o, 1, seed=1)
    np.testing.assert_array_equal(sd["state"][0]["momentum_buffer"], before)


def test_load_state_dict_rejects_mismatches():
    m, o = make(optim.Adam, lr=0.01)
    train_steps(m, o, 1, seed=0)
    sd = o.state_dict()
    other = optim.Adam(m.parameters(), lr=0.01)
    with pytest.raises(ValueError, match=r"has 2 parameter group.*this optimizer has 1"):
        other.load_state_dict(sd)
    sd["state"][0]["exp_avg"] = np.zeros((9, 9))
    with pytest.raises(ValueError, match=r"state 'exp_avg' of parameter 0 has shape \(9, 9\)"):
        o.load_state_dict(sd)


def test_step_closure_returns_loss():
    p = param([2.0])
    opt = optim.SGD([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 4.0 and p.data[0] == pytest.approx(1.6)


def test_clip_grad_norm_scales_to_max_norm():
    a, b = param([3.0, 0.0]), param([[0.0], [4.0]])
    a.grad = minidl.tensor(np.array([3.0, 0.0]))
    b.grad = minidl.tensor(np.array([[0.0], [4.0]]))
    total = clip_grad_norm_([a, b], max_norm=1.0)
    assert total.item() == pytest.approx(5.0)
    np.testing.assert_allclose(a.grad.data, [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(b.grad.data, [[0.0], [0.8]], rtol=1e-6)
    total = clip_grad_norm_([a, b], max_norm=10.0)  # already small: unchanged
    np.testing.assert_allclose(a.grad.data, [0.6, 0.0], rtol=1e-6)
    assert clip_grad_norm_([a, b], 1.0, norm_type=math.inf).item() == pytest.approx(0.8, rel=1e-6)


def test_clip_grad_nonfinite_and_value():
    a = param([1.0])
    a.grad = minidl.tensor(np.array([np.inf]))
    with pytest.raises(RuntimeError, match="error_if_nonfinite"):
        clip_grad_norm_([a], 1.0, error_if_nonfinite=True)
    a.grad = minidl.tensor(np.array([-3.0]))
    clip_grad_value_([a], 0.5)
    assert a.grad.data[0] == -0.5
    assert clip_grad_norm_([param([1.0])], 1.0).item() == 0.0  # no gradients at all
