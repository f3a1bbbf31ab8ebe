"""PyTorch parity: a torch module's state_dict, converted to numpy, loads into the minidl module of
the same name and shape (strict) and gives the same outputs and gradients. Skipped without torch."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tnn = torch.nn

import minidl  # noqa: E402
from minidl import nn  # noqa: E402
from minidl.models import LeNet5, ResNetCIFAR, TransformerClassifier  # noqa: E402


@pytest.fixture(autouse=True)
def float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def numpy_state(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def check(tmod, mmod, *inputs, train=False, rtol=1e-9, atol=1e-10, grads=True):
    """Load torch's state into minidl (strict), compare outputs, input gradients and parameter gradients."""
    tmod.train(train)
    mmod.double().train(train)
    mmod.load_state_dict(numpy_state(tmod), strict=True)
    assert list(mmod.state_dict()) == list(tmod.state_dict())
    t_in = [torch.tensor(x, requires_grad=x.dtype.kind == "f" and grads) for x in inputs]
    m_in = [minidl.tensor(x, requires_grad=x.dtype.kind == "f" and grads) for x in inputs]
    t_out = tmod(*t_in)
    m_out = mmod(*m_in)
    if isinstance(t_out, tuple):
        t_out, m_out = t_out[0], m_out[0]
    np.testing.assert_allclose(m_out.data, t_out.detach().numpy(), rtol=rtol, atol=atol)
    if grads:
        w = np.random.default_rng(0).standard_normal(t_out.shape)
        (t_out * torch.tensor(w)).sum().backward()
        (m_out * minidl.tensor(w)).sum().backward()
        for t, m in zip(t_in, m_in):
            if t.requires_grad:
                np.testing.assert_allclose(m.grad.data, t.grad.numpy(), rtol=1e-7, atol=1e-9)
        tp = dict(tmod.named_parameters())
        for name, p in mmod.named_parameters():
            np.testing.assert_allclose(p.grad.data, tp[name].grad.numpy(), rtol=1e-7, atol=1e-9, err_msg=name)
    # buffers (running statistics) evolve identically
    tb = dict(tmod.named_buffers())
    for name, b in mmod.named_buffers():
        np.testing.assert_allclose(b.data, tb[name].numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_linear():
    check(tnn.Linear(5, 3), nn.Linear(5, 3), rand(4, 5))


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(stride=2, padding=1), dict(padding=2, dilation=2), dict(groups=2, bias=False), dict(padding="same")],
)
def test_conv2d(kw):
    check(tnn.Conv2d(4, 6, 3, **kw), nn.Conv2d(4, 6, 3, **kw), rand(2, 4, 7, 7))


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm2d_train_and_eval(train):
    tbn, mbn = tnn.BatchNorm2d(3), nn.BatchNorm2d(3)
    tbn.running_mean.fill_(0.5)
    tbn.running_var.fill_(2.0)
    check(tbn, mbn, rand(4, 3, 5, 5), train=train)


def test_batchnorm1d_cumulative_average_over_several_batches():
    tbn, mbn = tnn.BatchNorm1d(4, momentum=None), nn.BatchNorm1d(4, momentum=None)
    mbn.double().load_state_dict(numpy_state(tbn))
    for i in range(3):
        x = rand(6, 4, seed=i) * (i + 1)
        tbn(torch.tensor(x))
        mbn(minidl.tensor(x))
    for name, b in mbn.named_buffers():
        np.testing.assert_allclose(b.data, dict(tbn.named_buffers())[name].numpy(), rtol=1e-12)
    check(tbn, mbn, rand(5, 4, 3), train=False)


def test_layernorm_embedding_pools_activations():
    check(tnn.LayerNorm((3, 4)), nn.LayerNorm((3, 4)), rand(2, 3, 4))
    check(tnn.Embedding(7, 3, padding_idx=0), nn.Embedding(7, 3, padding_idx=0), np.array([[0, 3, 6], [1, 1, 2]]))
    x = rand(2, 3, 9, 9)
    check(tnn.MaxPool2d(3, 2, 1), nn.MaxPool2d(3, 2, 1), x)
    check(tnn.AvgPool2d(2), nn.AvgPool2d(2), x)
    check(tnn.AdaptiveAvgPool2d(1), nn.AdaptiveAvgPool2d(1), x)
    check(tnn.AdaptiveAvgPool2d(3), nn.AdaptiveAvgPool2d(3), x)
    check(tnn.AdaptiveAvgPool2d(4), nn.AdaptiveAvgPool2d(4), x)
    for t, m in ((tnn.GELU(), nn.GELU()), (tnn.GELU("tanh"), nn.GELU("tanh")), (tnn.Tanh(), nn.Tanh())):
        check(t, m, rand(3, 4))
    check(tnn.Sigmoid(), nn.Sigmoid(), rand(3, 4))
    check(tnn.Upsample(scale_factor=2), nn.Upsample(2), x)


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_with_masks(batch_first):
    tm, mm = tnn.MultiheadAttention(8, 2, batch_first=batch_first), nn.MultiheadAttention(8, 2, batch_first=batch_first)
    q = rand(3, 5, 8) if batch_first else rand(5, 3, 8)
    k = rand(3, 4, 8, seed=1) if batch_first else rand(4, 3, 8, seed=1)
    attn_mask = np.zeros((5, 4), dtype=bool)
    attn_mask[0, 1] = True
    kpm = np.zeros((3, 4), dtype=bool)
    kpm[1, 3] = True

    class T(tnn.Module):
        def __init__(self):
            super().__init__()
            self.m = tm

        def forward(self, q, k):
            out, w = self.m(q, k, k, attn_mask=torch.tensor(attn_mask), key_padding_mask=torch.tensor(kpm))
            return out, w

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = mm

        def forward(self, q, k):
            return self.m(q, k, k, attn_mask=attn_mask, key_padding_mask=kpm)

    check(T(), M(), q, k)
    tm.eval()
    mm.eval()
    _, tw = tm(torch.tensor(q), torch.tensor(k), torch.tensor(k), average_attn_weights=False)
    _, mw = mm(minidl.tensor(q), minidl.tensor(k), minidl.tensor(k), average_attn_weights=False)
    np.testing.assert_allclose(mw.data, tw.detach().numpy(), rtol=1e-9)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("masks", [False, True])
def test_self_attention_takes_the_fused_path_and_matches(batch_first, masks, monkeypatch):
    from minidl.ops import attention

    calls = []
    fused = attention.SelfAttention.apply
    monkeypatch.setattr(attention.SelfAttention, "apply", lambda *a, **k: calls.append(1) or fused(*a, **k))
    tm, mm = tnn.MultiheadAttention(8, 2, batch_first=batch_first), nn.MultiheadAttention(8, 2, batch_first=batch_first)
    attn_mask = np.zeros((5, 5), dtype=bool)
    attn_mask[0, 1] = attn_mask[3, 4] = True
    kpm = np.zeros((3, 5), dtype=bool)
    kpm[1, 3] = True
    kw_t = dict(attn_mask=torch.tensor(attn_mask), key_padding_mask=torch.tensor(kpm)) if masks else {}
    kw_m = dict(attn_mask=attn_mask, key_padding_mask=kpm) if masks else {}

    class T(tnn.Module):
        def __init__(self):
            super().__init__()
            self.m = tm

        def forward(self, x):
            return self.m(x, x, x, need_weights=False, **kw_t)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = mm

        def forward(self, x):
            return self.m(x, x, x, need_weights=False, **kw_m)

    check(T(), M(), rand(3, 5, 8) if batch_first else rand(5, 3, 8))
    assert calls, "self-attention without weights did not take the fused op"


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder(norm_first):
    kw = dict(dim_feedforward=16, dropout=0.0, batch_first=True, norm_first=norm_first)
    tenc = tnn.TransformerEncoder(
        tnn.TransformerEncoderLayer(8, 2, activation="gelu", **kw), 2, enable_nested_tensor=False
    )
    menc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, activation="gelu", **kw), 2)
    check(tenc, menc, rand(2, 5, 8), train=True)


def test_lenet5():
    class TorchLeNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = tnn.Sequential(
                tnn.Conv2d(1, 6, 5, padding=2),
                tnn.ReLU(),
                tnn.MaxPool2d(2),
                tnn.Conv2d(6, 16, 5),
                tnn.ReLU(),
                tnn.MaxPool2d(2),
            )
            self.classifier = tnn.Sequential(
                tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10)
            )

        def forward(self, x):
            return self.classifier(self.features(x))

    check(TorchLeNet(), LeNet5(input_size=28), rand(2, 1, 28, 28), rtol=1e-8)


def test_resnet20_for_32x32_train_mode():
    class Block(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.downsample = (
                tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else None
            )

        def forward(self, x):
            out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

    class TorchResNet(tnn.Module):
        def __init__(self, n=3, w=16):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, w, 3, padding=1, bias=False)
            self.bn1 = tnn.BatchNorm2d(w)
            self.layer1 = tnn.Sequential(*[Block(w, w, 1) for _ in range(n)])
            self.layer2 = tnn.Sequential(Block(w, 2 * w, 2), *[Block(2 * w, 2 * w, 1) for _ in range(n - 1)])
            self.layer3 = tnn.Sequential(Block(2 * w, 4 * w, 2), *[Block(4 * w, 4 * w, 1) for _ in range(n - 1)])
            self.avgpool = tnn.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(4 * w, 10)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(self.avgpool(x).flatten(1))

    check(TorchResNet(), ResNetCIFAR(20), rand(2, 3, 32, 32), train=True, rtol=1e-7, atol=1e-9)


def test_transformer_classifier():
    class TorchClassifier(tnn.Module):
        def __init__(self):
            super().__init__()
            self.embed = tnn.Embedding(12, 16)
            self.pos_embed = tnn.Parameter(torch.randn(1, 7, 16) * 0.02)
            self.cls_token = tnn.Parameter(torch.randn(1, 1, 16) * 0.02)
            layer = tnn.TransformerEncoderLayer(16, 4, 32, 0.0, "gelu", batch_first=True, norm_first=True)
            self.encoder = tnn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.norm = tnn.LayerNorm(16)
            self.head = tnn.Linear(16, 3)

        def forward(self, ids):
            x = torch.cat([self.cls_token.expand(ids.shape[0], 1, 16), self.embed(ids)], 1) + self.pos_embed
            return self.head(self.norm(self.encoder(x))[:, 0])

    ids = np.random.default_rng(0).integers(0, 12, (3, 6))
    check(TorchClassifier(), TransformerClassifier(12, 3, 6, 16, 4, 2, 32, pool="cls"), ids, train=True)


def test_float32_state_dict_loads_into_default_model():
    """The everyday path: torch float32 weights into a float32 minidl model."""
    tmod = tnn.Linear(4, 2).float()
    mmod = nn.Linear(4, 2)
    mmod.load_state_dict(numpy_state(tmod))
    x = rand(3, 4).astype(np.float32)
    np.testing.assert_allclose(mmod(minidl.tensor(x)).data, tmod(torch.tensor(x)).detach().numpy(), rtol=1e-5)
