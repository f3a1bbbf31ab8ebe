"""Gradients of the walking-skeleton ops against float64 central differences."""

import numpy as np
import pytest

import minidl
import minidl.functional as F
from minidl import gradcheck


def t(*shape, seed=0, positive=False):
    rng = np.random.default_rng(seed + sum(shape))
    a = rng.standard_normal(shape)
    if positive:
        a = np.abs(a) + 0.5
    return minidl.tensor(a, requires_grad=True, dtype=np.float64)


@pytest.mark.parametrize(
    "fn, shapes",
    [
        (lambda a, b: a + b, [(3, 4), (4,)]),
        (lambda a, b: a - b, [(2, 3, 4), (3, 1)]),
        (lambda a, b: a * b, [(3, 1), (1, 5)]),
        (lambda a, b: a @ b, [(3, 4), (4, 2)]),
        (lambda a, b: a @ b, [(2, 3, 4), (4, 5)]),
        (lambda a: -a, [(3,)]),
        (lambda a: a.relu(), [(4, 5)]),
        (lambda a: a.exp(), [(4,)]),
        (lambda a: a.sum(axis=1), [(3, 4)]),
        (lambda a: a.mean(axis=(0, -1), keepdims=True), [(2, 3, 4)]),
        (lambda a: a.reshape(4, 3).T, [(3, 4)]),
        (lambda a: a[1:, ::2], [(3, 4)]),
        (lambda a: a[np.array([0, 2, 0])], [(3, 2)]),
        (lambda a: F.log_softmax(a, dim=-1), [(3, 5)]),
        (lambda a: F.cross_entropy(a, np.array([1, 0, 4])), [(3, 5)]),
    ],
)
def test_gradcheck(fn, shapes):
    assert gradcheck(fn, [t(*s, seed=i) for i, s in enumerate(shapes)])


def test_div_with_divisor_away_from_zero():
    assert gradcheck(lambda a, b: a / b, [t(3, 4), t(3, 1, positive=True)])


def test_log_positive():
    assert gradcheck(lambda a: a.log(), [t(3, 4, positive=True)])


def test_pow_both_operands():
    assert gradcheck(lambda a, b: a**b, [t(3, positive=True), t(3, seed=1)])


def test_gradient_accumulates_when_tensor_used_twice():
    a = minidl.tensor([1.0, 2.0], requires_grad=True)
    (a * a + a).sum().backward()
    np.testing.assert_allclose(a.grad.data, [3.0, 5.0])


def test_long_chain_does_not_recurse():
    a = minidl.tensor([1.0], requires_grad=True)
    y = a
    for _ in range(100_000):
        y = y + 1.0
    y.sum().backward()
    assert a.grad.item() == 1.0


def test_backward_twice_without_retain_graph_is_a_clear_error():
    a = minidl.tensor([1.0, 2.0], requires_grad=True)
    y = (a * a).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_non_scalar_backward_explains_what_to_pass():
    a = minidl.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="gradient argument"):
        (a * 2).backward()


def test_post_accumulate_hook_fires_once_gradient_is_complete():
    a = minidl.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    a.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.data.copy()))
    (a * 3 + a * a).sum().backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], [5.0, 7.0])


def test_shape_mismatch_names_op_and_shapes():
    with pytest.raises(ValueError, match=r"add: shapes \(2,\) and \(3,\)"):
        minidl.ones(2) + minidl.ones(3)
    with pytest.raises(ValueError, match="matmul"):
        minidl.ones(2, 3) @ minidl.ones(2, 3)
