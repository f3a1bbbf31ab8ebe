"""Layers against numpy references (no PyTorch needed), their modes, and their gradients in float64."""

import math

import numpy as np
import pytest

import minidl
from minidl import gradcheck, nn


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def t64(*shape, seed=0, grad=False):
    return minidl.tensor(rand(*shape, seed=seed), requires_grad=grad, dtype=np.float64)


def test_batchnorm_train_uses_batch_stats_and_updates_running_ones():
    bn = nn.BatchNorm2d(3, momentum=0.2).double()
    bn.weight.data[...] = [1.0, 2.0, 0.5]
    bn.bias.data[...] = [0.0, 1.0, -1.0]
    x = rand(4, 3, 5, 5) * 3 + 1
    out = bn(minidl.tensor(x)).data
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    ref = (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5) * bn.weight.data[:, None, None]
    np.testing.assert_allclose(out, ref + bn.bias.data[:, None, None], rtol=1e-10)
    n = x.size / 3
    np.testing.assert_allclose(bn.running_mean.data, 0.2 * mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.data, 0.8 + 0.2 * var * n / (n - 1), rtol=1e-12)  # unbiased
    assert int(bn.num_batches_tracked.data) == 1
    bn.eval()
    out = bn(minidl.tensor(x)).data
    ref = (x - bn.running_mean.data[:, None, None]) / np.sqrt(bn.running_var.data[:, None, None] + 1e-5)
    np.testing.assert_allclose(out, ref * bn.weight.data[:, None, None] + bn.bias.data[:, None, None], rtol=1e-10)
    assert int(bn.num_batches_tracked.data) == 1  # eval does not count


def test_batchnorm_cumulative_average_and_no_tracking():
    bn = nn.BatchNorm1d(2, momentum=None).double()
    batches = [rand(5, 2, seed=i) + i for i in range(3)]
    for b in batches:
        bn(minidl.tensor(b))
    np.testing.assert_allclose(bn.running_mean.data, np.mean([b.mean(0) for b in batches], axis=0), rtol=1e-12)
    free = nn.BatchNorm1d(2, track_running_stats=False)
    assert list(free.state_dict()) == ["weight", "bias"]
    free.eval()
    out = free(minidl.tensor(rand(6, 2).astype(np.float32))).data
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)  # batch statistics even in eval mode


def test_batchnorm_input_errors():
    with pytest.raises(ValueError, match=r"expected a 4-D input with 3 channels"):
        nn.BatchNorm2d(3)(minidl.ones(2, 4, 2, 2))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(minidl.ones(1, 3))
    nn.BatchNorm1d(3).eval()(minidl.ones(1, 3))  # fine in eval mode


def test_layernorm_matches_numpy_and_checks_shape():
    ln = nn.LayerNorm((3, 4)).double()
    x = rand(2, 3, 4) * 5
    out = ln(minidl.tensor(x)).data
    mu = x.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out, (x - mu) / np.sqrt(x.var(axis=(1, 2), keepdims=True) + 1e-5), rtol=1e-10)
    with pytest.raises(ValueError, match=r"last 2 dimension\(s\) must be \(3, 4\)"):
        ln(minidl.ones(2, 4, 3))


def test_dropout_modes_scaling_and_seed():
    x = minidl.ones(100, 100)
    drop = nn.Dropout(0.25)
    minidl.manual_seed(1)
    a = drop(x).data
    minidl.manual_seed(1)
    b = drop(x).data
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.unique(a), [0.0, 1 / 0.75], rtol=1e-6)  # kept values scaled by 1/(1-p)
    assert abs((a == 0).mean() - 0.25) < 0.02
    assert drop.eval()(x) is x
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        nn.Dropout(1.5)


def test_embedding_lookup_padding_and_errors():
    emb = nn.Embedding(5, 3, padding_idx=-1)
    assert emb.padding_idx == 4 and np.all(emb.weight.data[4] == 0)
    ids = np.array([[0, 4, 2], [2, 2, 1]])
    out = emb(ids)
    np.testing.assert_array_equal(out.data, emb.weight.data[ids])
    out.sum().backward()
    np.testing.assert_array_equal(emb.weight.grad.data[:, 0], [1, 1, 3, 0, 0])  # padding row: no gradient
    with pytest.raises(IndexError, match=r"id out of range \[0, 5\)"):
        emb(np.array([5]))
    with pytest.raises(TypeError, match="integers"):
        emb(np.array([1.0]))


def test_pooling_and_upsample_against_numpy():
    x = rand(2, 3, 6, 6)
    xt = minidl.tensor(x)
    np.testing.assert_allclose(nn.MaxPool2d(2)(xt).data, x.reshape(2, 3, 3, 2, 3, 2).max(axis=(3, 5)))
    np.testing.assert_allclose(nn.AvgPool2d(3)(xt).data, x.reshape(2, 3, 2, 3, 2, 3).mean(axis=(3, 5)))
    np.testing.assert_allclose(nn.AdaptiveAvgPool2d(1)(xt).data, x.mean(axis=(2, 3), keepdims=True))
    np.testing.assert_allclose(nn.AdaptiveAvgPool2d((2, 3))(xt).data, x.reshape(2, 3, 2, 3, 3, 2).mean(axis=(3, 5)))
    assert nn.AdaptiveAvgPool2d(4)(xt).shape == (2, 3, 4, 4)  # uneven: F.adaptive_avg_pool2d
    np.testing.assert_array_equal(nn.Upsample(2)(xt).data, x.repeat(2, axis=2).repeat(2, axis=3))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        nn.MaxPool2d(2)(minidl.ones(3, 4))


def test_conv2d_against_direct_loops():
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2).double()
    x = rand(2, 4, 5, 5)
    out = conv(minidl.tensor(x)).data
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    w, b = conv.weight.data, conv.bias.data
    ref = np.zeros((2, 6, 3, 3))
    for o in range(6):
        g = o // 3
        for i in range(3):
            for j in range(3):
                patch = xp[:, 2 * g : 2 * g + 2, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
                ref[:, o, i, j] = (patch * w[o]).sum(axis=(1, 2, 3)) + b[o]
    np.testing.assert_allclose(out, ref, rtol=1e-10)
    assert nn.Conv2d(2, 2, 5, padding="same")(minidl.ones(1, 2, 7, 7)).shape == (1, 2, 7, 7)
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 4, H, W\)"):
        conv(minidl.ones(1, 3, 5, 5))


def attention_reference(q, k, v, w, b, wo, bo, heads, mask=None):
    """Multi-head attention in plain numpy, batch first."""
    e = q.shape[-1]
    d = e // heads
    qp, kp, vp = (x @ w[i * e : (i + 1) * e].T + b[i * e : (i + 1) * e] for i, x in enumerate((q, k, v)))

    def split(x):
        return x.reshape(x.shape[0], x.shape[1], heads, d).transpose(0, 2, 1, 3)

    s = split(qp) @ split(kp).transpose(0, 1, 3, 2) / math.sqrt(d)
    if mask is not None:
        s = np.where(mask, -np.inf, s)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    out = (a @ split(vp)).transpose(0, 2, 1, 3).reshape(q.shape)
    return out @ wo.T + bo, a.mean(axis=1)


def test_multihead_attention_against_numpy_with_mask():
    mha = nn.MultiheadAttention(8, 2, batch_first=True).double()
    mha.in_proj_bias.data[...] = rand(24, seed=3)
    q, k = rand(2, 3, 8, seed=1), rand(2, 4, 8, seed=2)
    mask = np.zeros((3, 4), dtype=bool)
    mask[1, :2] = True
    out, w = mha(minidl.tensor(q), minidl.tensor(k), minidl.tensor(k), attn_mask=mask)
    w_in, b_in = mha.in_proj_weight.data, mha.in_proj_bias.data
    ref_out, ref_w = attention_reference(q, k, k, w_in, b_in, mha.out_proj.weight.data, mha.out_proj.bias.data, 2, mask)
    np.testing.assert_allclose(out.data, ref_out, rtol=1e-10)
    np.testing.assert_allclose(w.data, ref_w, rtol=1e-10)
    assert np.all(w.data[:, 1, :2] == 0)
    seq_first, _ = nn.MultiheadAttention(8, 2)(minidl.ones(3, 2, 8), minidl.ones(4, 2, 8), minidl.ones(4, 2, 8))
    assert seq_first.shape == (3, 2, 8)
    with pytest.raises(ValueError, match="not divisible"):
        nn.MultiheadAttention(10, 3)


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda: nn.MultiheadAttention(4, 2, batch_first=True), (2, 3, 4)),
        (lambda: nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True, norm_first=True), (2, 3, 4)),
        (lambda: nn.BatchNorm2d(2), (3, 2, 2, 2)),
        (lambda: nn.LayerNorm(4), (3, 4)),
        (lambda: nn.BasicBlock(2, 3, stride=2), (2, 2, 4, 4)),
        (lambda: nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.GELU(), nn.AvgPool2d(2), nn.Flatten()), (2, 2, 4, 4)),
    ],
)
def test_layer_gradients_against_finite_differences(build, shape):
    minidl.manual_seed(0)
    layer = build().double()
    x = t64(*shape, grad=True)

    def fn(inp, *params):
        out = layer(inp, inp, inp) if isinstance(layer, nn.MultiheadAttention) else layer(inp)
        return out[0] if isinstance(out, tuple) else out

    params = list(layer.parameters())
    assert gradcheck(fn, [x, *params])
