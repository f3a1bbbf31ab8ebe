"""The Tensor surface: constructors, dtypes, conversions, and numpy- and PyTorch-style method spellings."""

from __future__ import annotations

import numpy as np
import pytest

import minidl


def test_constructors_and_default_dtypes():
    assert minidl.tensor([1.0, 2.0]).dtype == np.float32  # Python floats, like torch.tensor
    assert minidl.tensor(np.ones(2)).dtype == np.float64  # numpy keeps its dtype
    assert minidl.tensor([1, 2]).dtype == np.int64
    assert minidl.tensor(True).dtype == np.bool_
    assert minidl.arange(5).dtype == np.int64 and minidl.arange(0, 1, 0.25).dtype == np.float32
    assert minidl.zeros(2, 3).shape == (2, 3) and minidl.ones((2, 3)).shape == (2, 3)
    assert minidl.full((2,), 7.0).tolist() == [7.0, 7.0]
    assert minidl.eye(3).data.trace() == 3
    assert minidl.randn(3, 4, requires_grad=True).requires_grad
    assert minidl.linspace(0, 1, 5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    r = minidl.randint(3, size=(100,))
    assert r.dtype == np.int64 and r.data.min() >= 0 and r.data.max() < 3
    with pytest.raises(ValueError, match="negative dimension"):
        minidl.zeros(-1)


def test_seeded_random_constructors_repeat():
    minidl.manual_seed(3)
    a = minidl.randn(4)
    minidl.manual_seed(3)
    np.testing.assert_array_equal(minidl.randn(4).data, a.data)


def test_float64_flows_end_to_end():
    x = minidl.randn(3, 4, dtype=np.float64, requires_grad=True)
    loss = minidl.functional.cross_entropy(x.tanh() @ minidl.ones(4, 5, dtype=np.float64), np.array([0, 1, 2]))
    loss.backward()
    assert loss.dtype == np.float64 and x.grad.dtype == np.float64


def test_scalars_conversions_and_truthiness():
    t = minidl.tensor([2.5])
    assert float(t) == 2.5 and t.item() == 2.5 and int(minidl.tensor(3)) == 3
    with pytest.raises(ValueError):
        bool(minidl.tensor([1.0, 2.0]))  # ambiguous, as in numpy and PyTorch
    with pytest.raises(TypeError, match="0-d"):
        len(minidl.tensor(1.0))
    with pytest.raises(ValueError, match="one element"):
        minidl.ones(2).item()
    with pytest.raises(RuntimeError, match=r"detach\(\)\.numpy\(\)"):
        minidl.ones(2, requires_grad=True).numpy()
    assert np.asarray(minidl.ones(2).numpy()).shape == (2,)


def test_numpy_and_pytorch_spellings_agree():
    x = minidl.tensor(np.arange(24.0).reshape(2, 3, 4))
    np.testing.assert_array_equal(x.sum(axis=1, keepdims=True).data, x.sum(dim=1, keepdim=True).data)
    np.testing.assert_array_equal(x.mean(-1).data, x.data.mean(-1))
    values, indices = x.max(dim=2)  # PyTorch style: a (values, indices) pair
    np.testing.assert_array_equal(values.data, x.data.max(2))
    np.testing.assert_array_equal(indices.data, x.data.argmax(2))
    np.testing.assert_array_equal(x.max(axis=2).data, x.data.max(2))  # numpy style: values only
    assert x.var().item() == pytest.approx(x.data.var(ddof=1))  # PyTorch's unbiased default
    assert x.var(ddof=0).item() == pytest.approx(x.data.var())
    assert x.view(-1, 4).shape == (6, 4) and x.reshape((4, 6)).shape == (4, 6)
    assert x.permute(2, 0, 1).shape == (4, 2, 3) and x.transpose(0, 2).shape == (4, 3, 2)
    assert x.unsqueeze(0).squeeze(0).shape == x.shape and x.flatten().shape == (24,)
    assert x.argmax(dim=-1).shape == (2, 3) and x.argmin().item() == 0
    with pytest.raises(TypeError, match="either axis or dim"):
        x.sum(axis=0, dim=1)


def test_comparisons_give_plain_boolean_tensors():
    x = minidl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    m = x > 1.5
    assert m.dtype == np.bool_ and not m.requires_grad
    assert (~m).tolist() == [True, False, False]
    assert ((x >= 2) & (x <= 2)).tolist() == [False, True, False]


def test_numpy_array_on_the_left_defers_to_tensor():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    y = np.array([3.0, 4.0]) * x
    assert isinstance(y, minidl.Tensor) and y.requires_grad


def test_repr_names_the_op_and_dtype():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    assert "requires_grad=True" in repr(x)
    assert "grad_fn=<MulBackward>" in repr(x * 2)
    assert "dtype=float64" in repr(minidl.tensor(np.ones(1)))


def test_astype_is_differentiable():
    x = minidl.tensor([1.5, 2.5], requires_grad=True)
    y = x.double() * 2
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.tolist() == [2.0, 2.0]


def test_numpy_scalars_are_weak_like_python_numbers():
    x = minidl.ones(2, requires_grad=True)
    for scalar in (np.float64(2.0), np.int64(2), np.float32(2.0)):
        y = x * scalar
        assert y.dtype == np.float32, type(scalar)
    (x * np.float64(3.0)).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_iteration_yields_rows_that_stay_in_the_graph():
    x = minidl.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    rows = list(x)
    assert len(rows) == 3 and rows[1].tolist() == [2.0, 3.0]
    sum(r.sum() for r in rows).backward()
    assert x.grad.tolist() == [[1.0, 1.0]] * 3
    with pytest.raises(TypeError, match="0-d"):
        iter(minidl.tensor(1.0)).__next__()
