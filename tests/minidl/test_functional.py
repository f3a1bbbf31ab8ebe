"""minidl.functional beyond the op matrix: layer semantics, argument checking, fused ops vs their references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minidl
import minidl.functional as F
from minidl.ops.conv import conv2d_reference
from minidl.ops.loss import cross_entropy_reference
from minidl.ops.normalization import batch_norm_reference, layer_norm_reference
from minidl.window import conv_padding, geometry, pair


def t64(*shape, seed=0, requires_grad=True):
    return minidl.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=requires_grad)


# ----------------------------------------------------------------------------- fused ops vs references
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 2),
    groups=st.integers(1, 3),
    cg=st.integers(1, 2),
    og=st.integers(1, 2),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    kh=st.integers(1, 3),
    kw=st.integers(1, 3),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    bias=st.booleans(),
)
def test_conv2d_fused_matches_its_reference_composition(
    n, groups, cg, og, h, w, kh, kw, stride, padding, dilation, bias
):
    span_h, span_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if h + 2 * padding[0] < span_h or w + 2 * padding[1] < span_w:
        with pytest.raises(ValueError, match="smaller than the dilated kernel"):
            F.conv2d(t64(n, groups * cg, h, w), t64(groups * og, cg, kh, kw), None, stride, padding, dilation, groups)
        return
    x, k = t64(n, groups * cg, h, w), t64(groups * og, cg, kh, kw, seed=1)
    b = t64(groups * og, seed=2) if bias else None
    out = F.conv2d(x, k, b, stride, padding, dilation, groups)
    geom = geometry(
        "conv2d", x.shape, (kh, kw), stride, conv_padding(padding, (kh, kw), dilation, stride, "t"), dilation
    )
    ref = conv2d_reference(x, k, b, geom=geom, groups=groups)
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-12, atol=1e-12)
    v = np.random.default_rng(3).standard_normal(out.shape)
    inputs = [x, k] + ([b] if bias else [])
    fused = minidl.grad(out, inputs, grad_outputs=v)
    composed = minidl.grad(ref, inputs, grad_outputs=v)
    for a, c in zip(fused, composed):
        np.testing.assert_allclose(a.data, c.data, rtol=1e-11, atol=1e-11)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(0, 6),
    classes=st.integers(1, 5),
    weighted=st.booleans(),
    smoothing=st.sampled_from([0.0, 0.1, 1.0]),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    seed=st.integers(0, 1000),
)
def test_fused_cross_entropy_matches_its_reference(rows, classes, weighted, smoothing, reduction, seed):
    rng = np.random.default_rng(seed)
    z = minidl.tensor(rng.standard_normal((rows, classes)) * 3, requires_grad=True)
    t = rng.integers(0, classes, rows)
    t[rng.random(rows) < 0.2] = -100
    w = rng.random(classes) + 0.5 if weighted else None
    kw = dict(target=t, weight=w, ignore_index=-100, reduction=reduction, label_smoothing=smoothing)
    with np.errstate(all="ignore"):
        fused = F.cross_entropy(z, t, w, reduction=reduction, label_smoothing=smoothing)
        ref = cross_entropy_reference(z, **kw)
    np.testing.assert_allclose(fused.data, ref.data, rtol=1e-12, atol=1e-12, equal_nan=True)
    if rows and np.isfinite(fused.data).all():
        v = rng.standard_normal(fused.shape)
        (a,) = minidl.grad(fused, z, grad_outputs=v)
        (b,) = minidl.grad(ref, z, grad_outputs=v)
        np.testing.assert_allclose(a.data, b.data, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_fused_matches_reference(training):
    x, g, b = t64(4, 3, 2, 2), t64(3, seed=1), t64(3, seed=2)
    rm, rv = np.zeros(3), np.ones(3) * 2
    out = F.batch_norm(x, rm.copy(), rv.copy(), g, b, training=training)
    ref = batch_norm_reference(x, g, b, rm, rv, training=training)
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-12, atol=1e-12)
    v = np.random.default_rng(5).standard_normal(out.shape)
    for a, c in zip(minidl.grad(out, [x, g, b], v), minidl.grad(ref, [x, g, b], v)):
        np.testing.assert_allclose(a.data, c.data, rtol=1e-10, atol=1e-12)


def test_layer_norm_fused_matches_reference():
    x, g = t64(2, 3, 4), t64(3, 4, seed=1)
    out = F.layer_norm(x, (3, 4), g)
    ref = layer_norm_reference(x, g, None, 2, 1e-5)
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-12, atol=1e-12)


def test_fold_is_the_adjoint_of_unfold():
    x = t64(2, 3, 5, 6)
    cols = F.unfold(x, (2, 3), dilation=(2, 1), padding=1, stride=(1, 2))
    c = np.random.default_rng(1).standard_normal(cols.shape)
    back = F.fold(minidl.tensor(c), (5, 6), (2, 3), dilation=(2, 1), padding=1, stride=(1, 2))
    # <unfold(x), c> == <x, fold(c)>
    assert np.sum(cols.data * c) == pytest.approx(np.sum(x.data * back.data), rel=1e-12)


# ----------------------------------------------------------------------------- layer semantics
def test_dropout_scales_kept_values_and_is_seeded():
    x = minidl.ones(200, 100, requires_grad=True)
    minidl.manual_seed(7)
    y = F.dropout(x, p=0.3)
    kept = y.data != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y.data[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, y.data)  # gradient is the same scaled mask
    minidl.manual_seed(7)
    np.testing.assert_array_equal(F.dropout(x, p=0.3).data, y.data)


def test_dropout_identity_cases_and_errors():
    x = t64(3, 4)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    assert not F.dropout(x, 1.0).data.any()
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        F.dropout(x, 1.5)


def test_batch_norm_updates_running_statistics_in_place():
    x = t64(8, 3, 2, requires_grad=False)
    rm, rv = minidl.zeros(3, dtype=np.float64), minidl.ones(3, dtype=np.float64)
    F.batch_norm(x, rm, rv, training=True, momentum=0.25)
    mean = x.data.mean(axis=(0, 2))
    var = x.data.var(axis=(0, 2), ddof=1)
    np.testing.assert_allclose(rm.data, 0.25 * mean)
    np.testing.assert_allclose(rv.data, 0.75 + 0.25 * var)
    out = F.batch_norm(x, rm, rv)  # eval mode normalises with them
    np.testing.assert_allclose(out.data, (x.data - rm.data[:, None]) / np.sqrt(rv.data[:, None] + 1e-5))


def test_batch_norm_errors():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(t64(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match=r"eval mode .* needs running_mean"):
        F.batch_norm(t64(2, 3), None, None)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        F.batch_norm(t64(2, 3), None, None, t64(4), training=True)


def test_layer_norm_errors():
    with pytest.raises(ValueError, match=r"does not end with normalized_shape \(4,\)"):
        F.layer_norm(t64(2, 3), 4)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        F.layer_norm(t64(2, 3), (3,), t64(2))


def test_max_pool_indices_and_unbatched_input():
    x = minidl.tensor(np.arange(16.0).reshape(1, 4, 4))
    out, idx = F.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(out.data, [[[5, 7], [13, 15]]])
    np.testing.assert_array_equal(idx.data, [[[5, 7], [13, 15]]])
    assert idx.dtype == np.int64


def test_pooling_errors():
    with pytest.raises(ValueError, match="at most half the kernel size"):
        F.max_pool2d(t64(1, 1, 4, 4), 2, padding=2)
    with pytest.raises(ValueError, match=r"must be \(N, C, H, W\) or \(C, H, W\)"):
        F.avg_pool2d(t64(4, 4), 2)
    with pytest.raises(ValueError, match="divisor_override must not be 0"):
        F.avg_pool2d(t64(1, 1, 4, 4), 2, divisor_override=0)


def test_adaptive_avg_pool_keeps_a_none_dimension():
    x = t64(2, 3, 5, 4)
    out = F.adaptive_avg_pool2d(x, (None, 2))
    np.testing.assert_allclose(out.data, x.data.reshape(2, 3, 5, 2, 2).mean(-1))


def test_conv2d_argument_errors():
    x, w = t64(1, 4, 5, 5), t64(6, 2, 3, 3)
    with pytest.raises(ValueError, match="groups=3 must divide in_channels 4"):
        F.conv2d(x, w, groups=3)
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        F.conv2d(x, w, groups=2, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"bias must have shape \(6,\)"):
        F.conv2d(x, w, t64(5), groups=2)
    with pytest.raises(ValueError, match="stride must be an int or a pair"):
        F.conv2d(x, w, groups=2, stride=(1, 2, 3))
    assert pair((2, 3), "x", "op") == (2, 3)


def test_embedding_padding_row_gets_no_gradient_and_max_norm_renormalises():
    w = t64(5, 3)
    ids = np.array([[0, 2], [2, 4]])
    F.embedding(ids, w, padding_idx=2).sum().backward()
    np.testing.assert_allclose(w.grad.data[2], 0.0)
    np.testing.assert_allclose(w.grad.data[0], 1.0)
    w2 = minidl.tensor(np.full((4, 2), 3.0))
    F.embedding(np.array([1]), w2, max_norm=1.0)
    assert np.linalg.norm(w2.data[1]) == pytest.approx(1.0, rel=1e-6)
    assert np.linalg.norm(w2.data[0]) == pytest.approx(np.sqrt(18))  # rows not looked up are untouched


def test_embedding_errors():
    w = t64(5, 3)
    with pytest.raises(IndexError, match="id 5 is out of range for 5 embeddings"):
        F.embedding(np.array([1, 5]), w)
    with pytest.raises(TypeError, match="integer ids"):
        F.embedding(np.array([1.0]), w)
    with pytest.raises(NotImplementedError, match="sparse"):
        F.embedding(np.array([1]), w, sparse=True)


def test_cross_entropy_ignores_targets_and_handles_all_ignored():
    z = t64(3, 4)
    t = np.array([1, -100, 2])
    full = F.cross_entropy(z, t, reduction="none")
    assert full.data[1] == 0.0
    assert F.cross_entropy(z, t).item() == pytest.approx(full.data[[0, 2]].mean())
    with np.errstate(invalid="ignore"):
        assert np.isnan(F.cross_entropy(z, np.full(3, -100)).item())  # 0/0 like PyTorch


def test_cross_entropy_and_loss_argument_errors():
    z = t64(3, 4)
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none'"):
        F.cross_entropy(z, np.array([0, 1, 2]), reduction="avg")
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
        F.cross_entropy(z, np.array([0, 1, 2]), label_smoothing=2.0)
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        F.cross_entropy(z, np.array([0, 1, 2]), np.ones(3))
    with pytest.raises(TypeError, match="positional"):
        F.cross_entropy(z, np.array([0, 1, 2]), None, None, -100)  # PyTorch's deprecated positional args
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        F.binary_cross_entropy(z, np.zeros((3, 4)))


def test_loss_targets_take_the_input_dtype():
    z = minidl.zeros(3, 2, requires_grad=True)
    assert F.mse_loss(z, np.ones((3, 2))).dtype == np.float32
    assert F.binary_cross_entropy_with_logits(z, np.ones((3, 2))).dtype == np.float32


def test_softmax_needs_an_explicit_dim():
    with pytest.raises(TypeError, match="pass dim explicitly"):
        F.softmax(t64(2, 3))
    np.testing.assert_allclose(F.softmax(t64(2, 3), dim=1, dtype=np.float32).data.sum(1), 1.0, rtol=1e-6)


def test_softmax_is_stable_for_huge_logits():
    z = minidl.tensor([[1000.0, 0.0, -1000.0]], dtype=np.float64)
    np.testing.assert_allclose(F.softmax(z, dim=-1).data, [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(F.log_softmax(z, dim=-1).data, [[0.0, -1000.0, -2000.0]])
    assert np.isfinite(F.cross_entropy(z, np.array([2])).item())


def test_one_hot():
    np.testing.assert_array_equal(F.one_hot(np.array([2, 0]), 3).data, [[0, 0, 1], [1, 0, 0]])
    assert F.one_hot(minidl.tensor([1, 3])).shape == (2, 4)
    with pytest.raises(ValueError, match=r"must be in \[0, 2\)"):
        F.one_hot(np.array([2]), 2)


def test_pad_errors():
    with pytest.raises(ValueError, match="even number of widths"):
        F.pad(t64(2, 3), (1, 2, 3))
    with pytest.raises(ValueError, match="reflect padding"):
        F.pad(t64(2, 3), (3, 0), mode="reflect")
    with pytest.raises(ValueError, match="mode must be"):
        F.pad(t64(2, 3), (1, 1), mode="mirror")


def test_linear_accepts_a_single_sample():
    x, w, b = t64(3), t64(4, 3, seed=1), t64(4, seed=2)
    np.testing.assert_allclose(F.linear(x, w, b).data, w.data @ x.data + b.data)


def test_index_add_accumulates_and_checks_its_indices():
    from minidl.ops.shape import index_add

    v = minidl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    out = index_add((4,), np.array([0, -1, 0]), v)
    np.testing.assert_allclose(out.data, [4.0, 0.0, 0.0, 2.0])
    with pytest.raises(IndexError, match=r"indices must be in \[-4, 4\)"):
        index_add((4,), np.array([0, 7]), v[:2])
