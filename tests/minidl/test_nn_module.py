"""Module infrastructure: registration, traversal, modes, state_dict round trips and their errors."""

import copy
import math

import numpy as np
import pytest

import minidl
from minidl import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(3, 2))
        self.scale = nn.Parameter(np.ones(1, dtype=np.float32))
        self.register_buffer("steps", np.zeros((), dtype=np.int64))
        self.register_buffer("cache", np.zeros(2, dtype=np.float32), persistent=False)

    def forward(self, x):
        return self.head(self.fc1(x)) * self.scale


def test_names_follow_pytorch_order():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "scale",
        "fc1.weight",
        "fc1.bias",
        "bn.weight",
        "bn.bias",
        "head.1.weight",
        "head.1.bias",
    ]
    assert list(net.state_dict()) == [
        "scale",
        "steps",
        "fc1.weight",
        "fc1.bias",
        "bn.weight",
        "bn.bias",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
        "head.1.weight",
        "head.1.bias",
    ]
    assert [n for n, _ in net.named_buffers()] == [
        "steps",
        "cache",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
    ]
    assert [n for n, _ in net.named_children()] == ["fc1", "bn", "head"]
    assert [n for n, _ in net.named_modules()] == ["", "fc1", "bn", "head", "head.0", "head.1"]
    assert len(list(net.children())) == 3 and len(list(net.modules())) == 6


def test_shapes_follow_pytorch():
    assert nn.Linear(5, 3).weight.shape == (3, 5)
    assert nn.Linear(5, 3).bias.shape == (3,)
    conv = nn.Conv2d(4, 6, (3, 5), groups=2)
    assert conv.weight.shape == (6, 2, 3, 5) and conv.bias.shape == (6,)
    assert nn.Embedding(7, 3).weight.shape == (7, 3)
    mha = nn.MultiheadAttention(8, 2)
    assert [(n, p.shape) for n, p in mha.named_parameters()] == [
        ("in_proj_weight", (24, 8)),
        ("in_proj_bias", (24,)),
        ("out_proj.weight", (8, 8)),
        ("out_proj.bias", (8,)),
    ]


def test_shared_parameter_reported_once():
    a = nn.Linear(3, 3)
    seq = nn.Sequential(a, nn.ReLU(), a)
    assert len(list(seq.parameters())) == 2


def test_reassigning_attribute_moves_it_between_kinds():
    m = nn.Module()
    m.x = nn.Parameter(np.zeros(2))
    m.x = nn.Linear(2, 2)
    assert "x" not in m._parameters and "x" in m._modules
    with pytest.raises(TypeError, match="as child module 'x'"):
        m.x = 3
    del m.x
    assert list(m.named_children()) == []


def test_assigning_before_super_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.zeros(1))

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Bad()


def test_train_eval_propagate_and_return_self():
    net = Net()
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(TypeError):
        net.train("no")


def test_zero_grad_set_to_none_or_zero():
    net = nn.Linear(2, 2)
    for p in net.parameters():
        p.grad = minidl.ones(*p.shape)
    net.zero_grad(set_to_none=False)
    assert all(np.all(p.grad.data == 0) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_round_trip_is_a_copy():
    minidl.manual_seed(0)
    a = Net()
    minidl.manual_seed(1)
    b = Net()
    sd = a.state_dict()
    sd_before = copy.deepcopy(sd)
    a.fc1.weight.data += 1  # later training must not change a saved state
    np.testing.assert_array_equal(sd["fc1.weight"], sd_before["fc1.weight"])
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    assert "cache" not in sd  # non-persistent buffer


def test_load_state_dict_strict_names_missing_unexpected_and_shapes():
    net = Net()
    sd = net.state_dict()
    del sd["fc1.bias"]
    sd["extra.weight"] = np.zeros(3)
    sd["head.1.weight"] = np.zeros((5, 5))
    before = net.state_dict()
    with pytest.raises(RuntimeError) as e:
        net.load_state_dict(sd)
    msg = str(e.value)
    assert "missing keys: fc1.bias" in msg
    assert "unexpected keys: extra.weight" in msg
    assert "size mismatch for head.1.weight: checkpoint has shape (5, 5), model has (2, 3)" in msg
    for k, v in net.state_dict().items():  # nothing was modified by the failed load
        np.testing.assert_array_equal(v, before[k])


def test_load_state_dict_non_strict_reports_keys_but_still_rejects_shapes():
    net = Net()
    sd = net.state_dict()
    del sd["scale"]
    sd["bogus"] = np.zeros(1)
    res = net.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["scale"] and res.unexpected_keys == ["bogus"]
    sd["fc1.weight"] = np.zeros((1, 1))
    with pytest.raises(RuntimeError, match=r"size mismatch for fc1\.weight"):
        net.load_state_dict(sd, strict=False)


def test_load_casts_dtype_and_accepts_tensors():
    lin = nn.Linear(2, 2)
    sd = {k: minidl.tensor(v.astype(np.float64)) for k, v in lin.state_dict().items()}
    sd["weight"] = minidl.tensor(np.full((2, 2), 0.5))
    lin.load_state_dict(sd)
    assert lin.weight.dtype == np.float32 and np.all(lin.weight.data == 0.5)


def test_repr_is_readable():
    text = repr(nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU()))
    assert text == ("Sequential(\n  (0): Linear(in_features=3, out_features=4, bias=False)\n  (1): ReLU()\n)")
    assert repr(nn.Conv2d(1, 6, 5, padding=2)) == "Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))"


def test_kaiming_uniform_default_init_bounds_and_seed():
    minidl.manual_seed(3)
    a = nn.Linear(100, 50)
    minidl.manual_seed(3)
    b = nn.Linear(100, 50)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    bound = 1 / math.sqrt(100)
    assert np.abs(a.weight.data).max() <= bound and np.abs(a.bias.data).max() <= bound
    # uniform on [-b, b] has std b / sqrt(3)
    assert abs(a.weight.data.std() - bound / math.sqrt(3)) < 0.05 * bound
    conv = nn.Conv2d(3, 8, 3)
    cbound = 1 / math.sqrt(3 * 9)
    assert np.abs(conv.weight.data).max() <= cbound and np.abs(conv.weight.data).max() > 0.8 * cbound


def test_init_functions_match_formulas():
    from minidl.nn import init

    w = minidl.zeros(400, 300)
    init.kaiming_normal_(w, nonlinearity="relu")
    assert abs(w.data.std() - math.sqrt(2 / 300)) < 0.02 * math.sqrt(2 / 300)
    init.xavier_uniform_(w)
    bound = math.sqrt(6 / 700)
    assert np.abs(w.data).max() <= bound and abs(w.data.std() - bound / math.sqrt(3)) < 0.02 * bound
    init.trunc_normal_(w, std=1.0, a=-0.5, b=0.5)
    assert np.abs(w.data).max() <= 0.5
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(minidl.zeros(3))


def test_to_double_keeps_parameter_identity():
    net = Net()
    params = list(net.parameters())
    net.double()
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert net.bn.num_batches_tracked.dtype == np.int64


def test_requires_grad_and_apply():
    net = Net()
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and "Linear" in seen


def test_forward_hooks():
    lin = nn.Linear(2, 2)
    calls = []
    remove = lin.register_forward_hook(lambda m, args, out: calls.append(out.shape))
    lin(minidl.ones(3, 2))
    remove()
    lin(minidl.ones(3, 2))
    assert calls == [(3, 2)]


def test_containers():
    ml = nn.ModuleList([nn.Linear(2, 2), nn.ReLU()])
    ml.append(nn.Linear(2, 1))
    assert len(ml) == 3 and isinstance(ml[-1], nn.Linear) and len(list(ml.parameters())) == 4
    md = nn.ModuleDict({"a": nn.Linear(2, 2)})
    assert "a" in md and list(md.state_dict()) == ["a.weight", "a.bias"]
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert isinstance(seq[1:], nn.Sequential) and len(seq[1:]) == 2
    with pytest.raises(IndexError, match="out of range"):
        seq[5]
    with pytest.raises(TypeError, match="not a Module"):
        nn.Sequential(nn.Linear(1, 1), lambda x: x)


def test_linear_input_check():
    with pytest.raises(ValueError, match="expected 3"):
        nn.Linear(3, 2)(minidl.ones(4, 5))
