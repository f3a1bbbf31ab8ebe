"""Forward, backward and double backward against PyTorch, when PyTorch is installed (skipped otherwise).

Each case runs the same function on minidl tensors and on torch tensors built from the same
float64 arrays, then compares outputs, the gradients of ``sum(W * out)`` for fixed random
``W``, and for a few cases a Hessian-vector product.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
TF = pytest.importorskip("torch.nn.functional")

import minidl  # noqa: E402
import minidl.functional as F  # noqa: E402

RNG = np.random.default_rng(0)


def _x(*shape, positive=False):
    a = RNG.standard_normal(shape)
    return np.abs(a) + 0.5 if positive else a


X4 = _x(2, 6, 9, 8)
T7 = np.array([0, 4, 2, -100, 1, 1, 3])
T4 = RNG.integers(0, 5, (2, 3, 4))
CW = RNG.random(5) + 0.5
P75 = RNG.random((7, 5))
P75 /= P75.sum(1, keepdims=True)
RM, RV = RNG.standard_normal(6), RNG.random(6) + 0.5
IDS = RNG.integers(0, 6, (3, 4))

# (id, minidl fn, torch fn, input arrays); functions take one tensor per array
CASES = [
    ("add_broadcast", lambda a, b: a + b, lambda a, b: a + b, [_x(3, 1, 4), _x(5, 1)]),
    ("div_pow", lambda a, b: a / b**1.5, lambda a, b: a / b**1.5, [_x(3, 4), _x(4, positive=True)]),
    ("pow_tensor_exponent", lambda a, b: a**b, lambda a, b: a**b, [_x(3, 4, positive=True), _x(3, 4)]),
    ("matmul_batched_1d", lambda a, b: (a @ b) @ b[0], lambda a, b: (a @ b) @ b[0], [_x(2, 3, 4), _x(4, 4)]),
    (
        "exp_log_sqrt",
        lambda a: (a.exp() + a.sqrt()).log(),
        lambda a: (a.exp() + a.sqrt()).log(),
        [_x(5, positive=True)],
    ),
    (
        "tanh_sigmoid_abs",
        lambda a: a.tanh() * a.sigmoid() + a.abs(),
        lambda a: a.tanh() * a.sigmoid() + a.abs(),
        [_x(6)],
    ),
    ("clamp", lambda a: a.clamp(-0.5, 0.5), lambda a: a.clamp(-0.5, 0.5), [_x(10)]),
    ("sum_mean_var", lambda a: a.sum(dim=1) + a.mean(dim=(0, 2)).sum() + a.var(dim=-1).sum(), None, [_x(3, 4, 5)]),
    ("std_unbiased", lambda a: a.std(dim=0), lambda a: a.std(dim=0), [_x(4, 3)]),
    ("amax_ties", lambda a: a.max(axis=1), lambda a: a.amax(dim=1), [np.round(_x(4, 6))]),
    ("max_dim_values", lambda a: a.max(dim=1).values, lambda a: a.max(dim=1).values, [_x(4, 6)]),
    ("logsumexp", lambda a: a.logsumexp(dim=-1), lambda a: a.logsumexp(dim=-1), [_x(3, 7) * 30]),
    ("softmax", lambda a: F.softmax(a, dim=0), lambda a: TF.softmax(a, dim=0), [_x(4, 3) * 20]),
    ("log_softmax", lambda a: F.log_softmax(a, dim=1), lambda a: TF.log_softmax(a, dim=1), [_x(4, 3) * 20]),
    ("relu_leaky", lambda a: F.relu(a) + F.leaky_relu(a, 0.2), lambda a: TF.relu(a) + TF.leaky_relu(a, 0.2), [_x(9)]),
    ("gelu", lambda a: F.gelu(a * 3), lambda a: TF.gelu(a * 3), [_x(20)]),
    ("gelu_tanh", lambda a: F.gelu(a, approximate="tanh"), lambda a: TF.gelu(a, approximate="tanh"), [_x(20)]),
    (
        "silu_softplus",
        lambda a: F.silu(a) + F.softplus(a * 9, 2, 5),
        lambda a: TF.silu(a) + TF.softplus(a * 9, 2, 5),
        [_x(20)],
    ),
    ("getitem_fancy", lambda a: a[np.array([0, 2, 0]), 1:], lambda a: a[torch.tensor([0, 2, 0]), 1:], [_x(3, 4)]),
    ("gather", lambda a: a.gather(1, np.array([[0, 0], [1, 0]])), None, [_x(2, 3)]),
    ("cat_stack_split", lambda a, b: minidl.stack(minidl.cat([a, b], 1).split(2, 1)[:2]), None, [_x(2, 3), _x(2, 1)]),
    ("where", lambda a, b: minidl.where(a.data > 0, a, b), None, [_x(3, 4), _x(4)]),
    ("linear", lambda x, w, b: F.linear(x, w, b), lambda x, w, b: TF.linear(x, w, b), [_x(2, 5, 3), _x(4, 3), _x(4)]),
    ("conv2d", lambda x, w, b: F.conv2d(x, w, b), lambda x, w, b: TF.conv2d(x, w, b), [X4, _x(4, 6, 3, 2), _x(4)]),
    (
        "conv2d_all_options",
        lambda x, w: F.conv2d(x, w, None, (2, 1), (1, 2), (2, 1), 2),
        lambda x, w: TF.conv2d(x, w, None, (2, 1), (1, 2), (2, 1), 2),
        [X4, _x(4, 3, 3, 2)],
    ),
    ("conv2d_same", lambda x, w: F.conv2d(x, w, padding="same", dilation=2), None, [X4, _x(2, 6, 2, 3)]),
    ("max_pool2d", lambda x: F.max_pool2d(x, 3, 2, 1), lambda x: TF.max_pool2d(x, 3, 2, 1), [X4]),
    (
        "max_pool2d_ceil_dilation",
        lambda x: F.max_pool2d(x, (3, 2), 2, 1, dilation=(1, 2), ceil_mode=True),
        lambda x: TF.max_pool2d(x, (3, 2), 2, 1, dilation=(1, 2), ceil_mode=True),
        [X4],
    ),
    ("avg_pool2d", lambda x: F.avg_pool2d(x, 3, 2, 1), lambda x: TF.avg_pool2d(x, 3, 2, 1), [X4]),
    (
        "avg_pool2d_ceil_exclude_pad",
        lambda x: F.avg_pool2d(x, (3, 2), 2, 1, ceil_mode=True, count_include_pad=False),
        lambda x: TF.avg_pool2d(x, (3, 2), 2, 1, ceil_mode=True, count_include_pad=False),
        [X4],
    ),
    ("avg_pool2d_divisor", lambda x: F.avg_pool2d(x, 2, divisor_override=3), None, [X4]),
    ("adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (4, 3)), None, [X4]),
    ("adaptive_avg_pool2d_1", lambda x: F.adaptive_avg_pool2d(x, 1), None, [X4]),
    ("unfold", lambda x: F.unfold(x, (3, 2), (1, 2), 1, 2), lambda x: TF.unfold(x, (3, 2), (1, 2), 1, 2), [X4]),
    (
        "fold",
        lambda c: F.fold(c, (9, 8), (3, 2), (1, 2), 1, 2),
        lambda c: TF.fold(c, (9, 8), (3, 2), (1, 2), 1, 2),
        [_x(2, 36, 20)],
    ),
    (
        "batch_norm_eval",
        lambda x, g, b: F.batch_norm(x, RM, RV, g, b),
        lambda x, g, b: TF.batch_norm(x, torch.tensor(RM), torch.tensor(RV), g, b),
        [X4, _x(6), _x(6)],
    ),
    (
        "batch_norm_train",
        lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True),
        lambda x, g, b: TF.batch_norm(x, None, None, g, b, training=True),
        [X4, _x(6), _x(6)],
    ),
    (
        "layer_norm",
        lambda x, g, b: F.layer_norm(x, (9, 8), g, b),
        lambda x, g, b: TF.layer_norm(x, (9, 8), g, b),
        [X4, _x(9, 8), _x(9, 8)],
    ),
    (
        "embedding_padding_idx",
        lambda w: F.embedding(IDS, w, padding_idx=2),
        lambda w: TF.embedding(torch.tensor(IDS), w, padding_idx=2),
        [_x(6, 3)],
    ),
    ("pad_reflect", lambda x: F.pad(x, (1, 2, 2, 1), mode="reflect"), None, [X4]),
    ("pad_replicate", lambda x: F.pad(x, (1, 2, 2, 1), mode="replicate"), None, [X4]),
    ("pad_circular", lambda x: F.pad(x, (1, 2, 2, 1), mode="circular"), None, [X4]),
    ("pad_negative", lambda x: F.pad(x, (-1, 2, 0, -3), value=1.5), None, [X4]),
    ("mse_l1", lambda a, b: F.mse_loss(a, b) + F.l1_loss(a, b, reduction="sum"), None, [_x(3, 4), _x(3, 4)]),
    (
        "smooth_l1_huber",
        lambda a, b: F.smooth_l1_loss(a, b, beta=0.5) + F.huber_loss(a, b, delta=0.7),
        lambda a, b: TF.smooth_l1_loss(a, b, beta=0.5) + TF.huber_loss(a, b, delta=0.7),
        [_x(3, 4), _x(3, 4)],
    ),
    (
        "bce_with_logits_pos_weight",
        lambda z, y: F.binary_cross_entropy_with_logits(z * 10, y.sigmoid(), pos_weight=np.full(5, 2.0)),
        lambda z, y: TF.binary_cross_entropy_with_logits(
            z * 10, y.sigmoid(), pos_weight=torch.full((5,), 2.0, dtype=torch.float64)
        ),
        [_x(7, 5), _x(7, 5)],
    ),
    ("bce", lambda z, y: F.binary_cross_entropy(z.sigmoid(), y.sigmoid()), None, [_x(7, 5), _x(7, 5)]),
    ("nll_loss", lambda z: F.nll_loss(F.log_softmax(z, 1), T7, CW), None, [_x(7, 5)]),
    ("cross_entropy_nd", lambda z: F.cross_entropy(z, T4, label_smoothing=0.1), None, [_x(2, 5, 3, 4)]),
    ("cross_entropy_probabilities", lambda z: F.cross_entropy(z, P75, CW, label_smoothing=0.1), None, [_x(7, 5)]),
    ("cross_entropy_unbatched", lambda z: F.cross_entropy(z, np.array(3)), None, [_x(5)]),
] + [
    (
        f"cross_entropy_{red}_ls{ls}_w{w is not None}",
        lambda z, red=red, ls=ls, w=w: F.cross_entropy(z, T7, w, reduction=red, label_smoothing=ls),
        None,
        [_x(7, 5)],
    )
    for red in ("mean", "sum", "none")
    for ls in (0.0, 0.2)
    for w in (None, CW)
]


CASES += [
    # piecewise-linear pooling has a zero second derivative: compose it with a curved op
    ("max_pool2d_of_square", lambda x: F.max_pool2d(x * x, 3, 2, 1), lambda x: TF.max_pool2d(x * x, 3, 2, 1), [X4]),
    ("avg_pool2d_of_tanh", lambda x: F.avg_pool2d(x.tanh(), 2), lambda x: TF.avg_pool2d(x.tanh(), 2), [X4]),
]


def _torch_fn(case_id, mfn, tfn):
    """The PyTorch twin of a case (spelled out here when its minidl form differs)."""
    if tfn is not None:
        return tfn
    # the same lambda runs on torch tensors once minidl.functional/minidl names are mapped
    mapping = {
        "sum_mean_var": lambda a: a.sum(dim=1) + a.mean(dim=(0, 2)).sum() + a.var(dim=-1).sum(),
        "gather": lambda a: a.gather(1, torch.tensor([[0, 0], [1, 0]])),
        "cat_stack_split": lambda a, b: torch.stack(torch.cat([a, b], 1).split(2, 1)[:2]),
        "where": lambda a, b: torch.where(a > 0, a, b),
        "conv2d_same": lambda x, w: TF.conv2d(x, w, padding="same", dilation=2),
        "avg_pool2d_divisor": lambda x: TF.avg_pool2d(x, 2, divisor_override=3),
        "adaptive_avg_pool2d": lambda x: TF.adaptive_avg_pool2d(x, (4, 3)),
        "adaptive_avg_pool2d_1": lambda x: TF.adaptive_avg_pool2d(x, 1),
        "pad_reflect": lambda x: TF.pad(x, (1, 2, 2, 1), mode="reflect"),
        "pad_replicate": lambda x: TF.pad(x, (1, 2, 2, 1), mode="replicate"),
        "pad_circular": lambda x: TF.pad(x, (1, 2, 2, 1), mode="circular"),
        "pad_negative": lambda x: TF.pad(x, (-1, 2, 0, -3), value=1.5),
        "mse_l1": lambda a, b: TF.mse_loss(a, b) + TF.l1_loss(a, b, reduction="sum"),
        "bce": lambda z, y: TF.binary_cross_entropy(z.sigmoid(), y.sigmoid()),
        "nll_loss": lambda z: TF.nll_loss(TF.log_softmax(z, 1), torch.tensor(T7), torch.tensor(CW)),
        "cross_entropy_nd": lambda z: TF.cross_entropy(z, torch.tensor(T4), label_smoothing=0.1),
        "cross_entropy_probabilities": lambda z: TF.cross_entropy(
            z, torch.tensor(P75), torch.tensor(CW), label_smoothing=0.1
        ),
        "cross_entropy_unbatched": lambda z: TF.cross_entropy(z, torch.tensor(3)),
    }
    if case_id in mapping:
        return mapping[case_id]
    if case_id.startswith("cross_entropy_"):
        _, _, red, ls, w = case_id.split("_")
        weight = torch.tensor(CW) if w == "wTrue" else None
        return lambda z: TF.cross_entropy(z, torch.tensor(T7), weight, reduction=red, label_smoothing=float(ls[2:]))
    raise KeyError(case_id)


@pytest.mark.parametrize("case_id, mfn, tfn, arrays", CASES, ids=[c[0] for c in CASES])
def test_forward_and_backward_match_pytorch(case_id, mfn, tfn, arrays):
    tfn = _torch_fn(case_id, mfn, tfn)
    m_in = [minidl.tensor(a, requires_grad=True) for a in arrays]
    t_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    m_out, t_out = mfn(*m_in), tfn(*t_in)
    np.testing.assert_allclose(m_out.data, t_out.detach().numpy(), rtol=1e-10, atol=1e-12)
    w = np.random.default_rng(1).standard_normal(m_out.shape)
    (m_out * w).sum().backward()
    (t_out * torch.tensor(w)).sum().backward()
    for i, (m, t) in enumerate(zip(m_in, t_in)):
        t_grad = np.zeros(m.shape) if t.grad is None else t.grad.numpy()
        m_grad = np.zeros(m.shape) if m.grad is None else m.grad.data
        np.testing.assert_allclose(m_grad, t_grad, rtol=1e-9, atol=1e-11, err_msg=f"gradient of input {i}")


def test_running_statistics_match_pytorch():
    x = torch.tensor(X4)
    rm_t, rv_t = torch.tensor(RM), torch.tensor(RV)
    rm_m, rv_m = RM.copy(), RV.copy()
    for momentum in (0.1, 0.5):
        TF.batch_norm(x, rm_t, rv_t, training=True, momentum=momentum)
        F.batch_norm(minidl.tensor(X4), rm_m, rv_m, training=True, momentum=momentum)
    np.testing.assert_allclose(rm_m, rm_t.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv_m, rv_t.numpy(), rtol=1e-12)


def test_max_pool_indices_match_pytorch():
    _, m_idx = F.max_pool2d(minidl.tensor(X4), 3, 2, 1, return_indices=True)
    _, t_idx = TF.max_pool2d(torch.tensor(X4), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(m_idx.data, t_idx.numpy())


HVP_CASES = ["conv2d", "batch_norm_train", "layer_norm", "cross_entropy_mean_ls0.2_wTrue", "gelu", "softmax"]
HVP_CASES += ["max_pool2d_of_square", "avg_pool2d_of_tanh"]


@pytest.mark.parametrize("case_id", HVP_CASES)
def test_hessian_vector_products_match_pytorch(case_id):
    _, mfn, tfn, arrays = next(c for c in CASES if c[0] == case_id)
    tfn = _torch_fn(case_id, mfn, tfn)
    rng = np.random.default_rng(2)
    vs = [rng.standard_normal(a.shape) for a in arrays]
    w = None

    def hvp(fn, tensors, grad, make):
        nonlocal w
        out = fn(*tensors)
        if w is None:
            w = rng.standard_normal(tuple(out.shape))
        loss = (out * make(w)).sum()
        gs = grad(loss, tensors, create_graph=True)
        dot = sum((g * make(v)).sum() for g, v in zip(gs, vs))
        return grad(dot, tensors, allow_unused=True)

    m_h = hvp(mfn, [minidl.tensor(a, requires_grad=True) for a in arrays], minidl.grad, minidl.tensor)
    t_h = hvp(tfn, [torch.tensor(a, requires_grad=True) for a in arrays], torch.autograd.grad, torch.tensor)
    for a, m, t in zip(arrays, m_h, t_h):  # None: the gradient does not depend on that input
        m_arr = np.zeros(a.shape) if m is None else m.data
        t_arr = np.zeros(a.shape) if t is None else t.numpy()
        np.testing.assert_allclose(m_arr, t_arr, rtol=1e-8, atol=1e-10)
