"""The engine: grad(), higher-order gradients, hooks, grad modes, graph freeing, memory, errors."""

from __future__ import annotations

import gc
import sys
import threading
import tracemalloc
import weakref

import numpy as np
import pytest

import minidl
import minidl.functional as F
from minidl import autograd, gradcheck
from minidl.autograd import Context, Function


def f64(*shape, seed=0, requires_grad=True):
    return minidl.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=requires_grad)


# ----------------------------------------------------------------------------- grad()
def test_grad_returns_gradients_without_touching_dot_grad():
    x = f64(3)
    y = (x * x).sum()
    (g,) = minidl.grad(y, x)
    np.testing.assert_allclose(g.data, 2 * x.data)
    assert x.grad is None


def test_grad_with_grad_outputs_is_a_vector_jacobian_product():
    x = f64(3)
    v = np.array([1.0, -2.0, 0.5])
    (g,) = minidl.grad(x.exp(), [x], grad_outputs=[v])
    np.testing.assert_allclose(g.data, v * np.exp(x.data))


def test_grad_of_a_non_scalar_without_grad_outputs_explains():
    x = f64(3)
    with pytest.raises(RuntimeError, match=r"not a scalar \(shape \(3,\)\).*pass a tensor of shape"):
        minidl.grad(x * 2, x)


def test_grad_unused_input_is_an_error_unless_allowed():
    x, z = f64(2), f64(2, seed=1)
    y = (x * 2).sum()
    with pytest.raises(RuntimeError, match=r"input 1 .* not used"):
        minidl.grad(y, [x, z], retain_graph=True)
    gx, gz = minidl.grad(y, [x, z], allow_unused=True)
    assert gz is None and np.allclose(gx.data, 2)


def test_grad_with_respect_to_an_intermediate_tensor_stops_there():
    x = f64(3)
    h = x * 3
    y = (h * h).sum()
    (gh,) = minidl.grad(y, h, retain_graph=True)
    np.testing.assert_allclose(gh.data, 2 * h.data)
    # the part of the graph below h was not visited, so it is still intact
    (gx,) = minidl.grad(y, x)
    np.testing.assert_allclose(gx.data, 18 * x.data)


class _Exploding(Function):
    """Identity whose backward must never run (to prove a branch was pruned)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        return a.copy()

    @staticmethod
    def backward(ctx: Context, grad):
        raise AssertionError("backward ran on a branch that does not lead to the requested inputs")


def test_grad_only_computes_what_leads_to_the_inputs():
    x, w = f64(3), f64(3, seed=1)
    y = (x * 2).sum() + _Exploding.apply(w).sum()
    (g,) = minidl.grad(y, x)
    np.testing.assert_allclose(g.data, 2.0)


# ----------------------------------------------------------------------------- higher order
def test_second_and_third_derivatives_of_a_cubic():
    x = minidl.tensor([0.5, -1.5, 2.0], requires_grad=True, dtype=np.float64)
    y = (x**3).sum()
    (g,) = minidl.grad(y, x, create_graph=True)
    (h,) = minidl.grad(g.sum(), x, create_graph=True)
    (t,) = minidl.grad(h.sum(), x)
    np.testing.assert_allclose(g.data, 3 * x.data**2)
    np.testing.assert_allclose(h.data, 6 * x.data)
    np.testing.assert_allclose(t.data, 6.0)


def test_backward_create_graph_leaves_a_differentiable_dot_grad():
    x = minidl.tensor([1.0, 2.0], requires_grad=True, dtype=np.float64)
    (x.exp() * x).sum().backward(create_graph=True)
    assert x.grad.requires_grad
    g = x.grad.detach().data.copy()
    x.grad.sum().backward()  # accumulates d/dx of the first gradient on top of it
    np.testing.assert_allclose(g, np.exp(x.data) * (1 + x.data))
    np.testing.assert_allclose(x.grad.data, g + np.exp(x.data) * (2 + x.data))


def _mlp_loss(params, x, y):
    w1, b1, w2, b2, k = params
    h = F.conv2d(x, k, padding=1).flatten(1)
    h = F.gelu(F.linear(h, w1, b1))
    h = F.layer_norm(h, (h.shape[-1],))
    return F.cross_entropy(F.linear(h.tanh(), w2, b2), y, label_smoothing=0.1)


def test_hessian_vector_product_of_a_small_network_matches_finite_differences_of_gradients():
    rng = np.random.default_rng(0)
    shapes = [(6, 8), (6,), (3, 6), (3,), (2, 1, 3, 3)]
    params = [minidl.tensor(rng.standard_normal(s) * 0.5, requires_grad=True) for s in shapes]
    x = minidl.tensor(rng.standard_normal((5, 1, 2, 2)))
    y = np.array([0, 2, 1, 1, 0])
    v = [rng.standard_normal(s) for s in shapes]

    loss = _mlp_loss(params, x, y)
    grads = minidl.grad(loss, params, create_graph=True)
    dot = sum((g * vi).sum() for g, vi in zip(grads, v))
    hvp = minidl.grad(dot, params)

    eps = 1e-5

    def grads_at(sign):
        shifted = [minidl.tensor(p.data + sign * eps * vi, requires_grad=True) for p, vi in zip(params, v)]
        return minidl.grad(_mlp_loss(shifted, x, y), shifted)

    plus, minus = grads_at(+1), grads_at(-1)
    for h, gp, gm in zip(hvp, plus, minus):
        np.testing.assert_allclose(h.data, (gp.data - gm.data) / (2 * eps), rtol=1e-5, atol=1e-7)


def test_power_iteration_on_hessian_vector_products_finds_the_top_eigenvalue():
    # the sharpness measurement of the large-batch studies, on a loss whose Hessian is known
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    eig = np.array([5.0, 2.0, 1.0, 0.5, 0.1, -0.3])
    a = q @ np.diag(eig) @ q.T
    w = minidl.tensor(rng.standard_normal(6), requires_grad=True)
    loss = 0.5 * (w @ minidl.tensor(a) @ w) + (w**2).sum() * 0.0
    (g,) = minidl.grad(loss, w, create_graph=True)
    v = rng.standard_normal(6)
    for _ in range(60):
        (hv,) = minidl.grad(g, w, grad_outputs=v, retain_graph=True)
        lam = float(v @ hv.data) / float(v @ v)
        v = hv.data / np.linalg.norm(hv.data)
    assert lam == pytest.approx(5.0, rel=1e-6)


# ----------------------------------------------------------------------------- hooks
def test_tensor_hook_can_replace_the_gradient_and_be_removed():
    x = f64(3)
    remove = x.register_hook(lambda g: g * 10)
    (x * 2).sum().backward()
    np.testing.assert_allclose(x.grad.data, 20.0)
    remove()
    x.grad = None
    (x * 2).sum().backward()
    np.testing.assert_allclose(x.grad.data, 2.0)


def test_hook_on_an_intermediate_tensor_sees_its_gradient():
    x = f64(3)
    h = x * 3
    seen = []
    h.register_hook(lambda g: seen.append(g.data.copy()))
    (h * h).sum().backward()
    np.testing.assert_allclose(seen[0], 2 * h.data)


def test_leaf_hooks_fire_during_backward_last_layer_first():
    minidl.manual_seed(0)
    model = minidl.nn.Sequential(minidl.nn.Linear(4, 5), minidl.nn.ReLU(), minidl.nn.Linear(5, 2))
    events = []
    for name, p in model.named_parameters():
        p.register_post_accumulate_grad_hook(lambda p, name=name: events.append(name))

    class Marker(Function):  # its backward runs after the last layer's and before the first layer's
        @staticmethod
        def forward(ctx, a):
            return a.copy()

        @staticmethod
        def backward(ctx, grad):
            events.append("marker")
            return grad

    x = minidl.randn(3, 4)
    h = Marker.apply(model[1](model[0](x)))
    F.cross_entropy(model[2](h), np.array([0, 1, 1])).backward()
    assert set(events[: events.index("marker")]) == {"2.weight", "2.bias"}
    assert set(events[events.index("marker") + 1 :]) == {"0.weight", "0.bias"}


def test_queue_callback_runs_once_after_backward():
    x = f64(2)
    order = []
    x.register_post_accumulate_grad_hook(lambda p: order.append("hook"))
    autograd.queue_callback(lambda: order.append("callback"))
    (x * x).sum().backward()
    (x * x).sum().backward()
    assert order == ["hook", "callback", "hook"]


# ----------------------------------------------------------------------------- modes
def test_no_grad_records_nothing_and_works_as_decorator():
    x = f64(2)
    with minidl.no_grad():
        y = x * 2
        with minidl.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad

    @minidl.no_grad()
    def f(t):
        return t * 3

    @minidl.no_grad  # also without parentheses, as recent PyTorch allows
    def g(t):
        return t * 3

    assert not f(x).requires_grad and not g(x).requires_grad
    assert minidl.is_grad_enabled()
    with minidl.set_grad_enabled(False):
        assert not (x * 2).requires_grad


def test_grad_mode_is_per_thread():
    inside, release = threading.Event(), threading.Event()

    def helper():
        with minidl.no_grad():
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=helper)
    worker.start()
    try:
        assert inside.wait(10)
        assert minidl.is_grad_enabled()  # the helper's no_grad does not reach this thread
        assert (f64(2) * 2).requires_grad
    finally:
        release.set()
        worker.join()


def test_detach_shares_data_and_cuts_the_graph():
    x = f64(3)
    d = (x * 2).detach()
    assert not d.requires_grad and d.is_leaf
    y = x * 1.0
    assert y.detach().data is y.data


def test_requires_grad_rules():
    with pytest.raises(TypeError, match="int64"):
        minidl.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="int32"):
        minidl.zeros(2, dtype=np.int32).requires_grad_()
    x = f64(2)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (x * 2).requires_grad_(False)
    assert minidl.zeros(2).requires_grad_().requires_grad


def test_gradients_accumulate_across_uses_and_calls():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    (x * x + x).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.data, [6.0, 8.0])


def test_accumulation_into_an_existing_grad_is_in_place():
    x = f64(3)
    bucket = np.zeros(5)
    x.grad = minidl.Tensor._make(bucket[1:4])  # e.g. a view into a data-parallel gradient bucket
    (x * 2).sum().backward()
    np.testing.assert_allclose(bucket, [0, 2, 2, 2, 0])
    assert x.grad.data.base is bucket


def test_dropping_a_deep_graph_without_backward_does_not_crash():
    y = f64(1)
    for _ in range(50_000):
        y = y + 1.0
    del y  # deallocating 50 000 nested nodes must not overflow the C stack


def test_each_leaf_gets_its_own_gradient_array():
    a, b = f64(3), f64(3, seed=1)
    (a + b).sum().backward()  # add's backward hands the same gradient to both inputs
    a.grad.data[...] = 0  # e.g. zero_grad(set_to_none=False) or an in-place allreduce
    np.testing.assert_allclose(b.grad.data, 1.0)


def test_gradients_taken_without_a_copy_are_still_private():
    # Linear declares fresh_grads: the engine keeps its arrays as .grad instead of copying them
    x = f64(4, 3)
    w1, b1, w2, b2 = f64(5, 3, seed=1), f64(5, seed=2), f64(2, 5, seed=3), f64(2, seed=4)
    F.linear(F.linear(x, w1, b1).tanh(), w2, b2).sum().backward()
    grads = [t.grad.data for t in (x, w1, b1, w2, b2)]
    for i, g in enumerate(grads):
        assert g.flags.c_contiguous and g.flags.writeable
        for h in grads[i + 1 :]:
            assert not np.shares_memory(g, h)
    expected_b2 = np.full(2, 4.0)  # d(sum)/d(b2): one per row
    w1.grad.data[...] = 7  # an in-place update of one gradient touches no other
    np.testing.assert_allclose(b2.grad.data, expected_b2)


def test_a_gradient_a_hook_has_seen_is_copied_into_dot_grad():
    x, w = f64(4, 3), f64(2, 3, seed=1)
    seen = []
    w.register_hook(lambda g: seen.append(g))
    F.linear(x, w).sum().backward()
    np.testing.assert_allclose(seen[0].data, w.grad.data)
    w.grad.data[...] = 0  # e.g. an in-place allreduce: the hook's tensor keeps its values
    np.testing.assert_allclose(seen[0].data, np.tile(x.data.sum(axis=0), (2, 1)))


def test_gradient_has_the_dtype_of_its_tensor():
    w = minidl.ones(3, requires_grad=True)
    (w * np.arange(3.0)).sum().backward()  # float64 constant promotes the product
    assert w.grad.dtype == np.float32


def test_retain_graph_allows_a_second_backward():
    x = f64(2)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.data.copy()
    y.backward()
    np.testing.assert_allclose(x.grad.data, 2 * first)
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_grad_and_grad_fn():
    x = f64(2)
    h = x * 2
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.data, 2 * h.data)
    assert h.grad_fn.name == "Mul" and x.grad_fn is None and x.is_leaf and not h.is_leaf


# ----------------------------------------------------------------------------- memory
def test_backward_frees_the_graph_without_the_garbage_collector():
    gc.disable()
    try:
        x = f64(50, 20)
        h = F.gelu(x @ minidl.tensor(np.ones((20, 30)))).softmax(-1)
        alive = weakref.ref(h)
        loss = h.sum()
        del h
        assert alive() is not None  # held by loss's graph
        loss.backward()
        assert alive() is None  # graph released by backward alone: no reference cycles
    finally:
        gc.enable()


def test_an_unused_graph_is_freed_by_reference_counting():
    gc.disable()
    try:
        x = f64(10, 10)
        y = x.exp().sigmoid().tanh()  # ops that keep a (weak) reference to their output
        alive = weakref.ref(y)
        del y
        assert alive() is None
    finally:
        gc.enable()


def test_memory_does_not_grow_over_1000_training_steps():
    # Counting the interpreter's allocated blocks is cheap and exact: a step that left behind one
    # tensor (its object, its array, its node) would add thousands of blocks over 1000 steps.
    minidl.manual_seed(0)
    model = minidl.nn.Sequential(minidl.nn.Linear(8, 16), minidl.nn.ReLU(), minidl.nn.Linear(16, 3))
    opt = minidl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = minidl.randn(16, 8)
    y = np.arange(16) % 3

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(50):  # warm up caches and optimizer state
        step()
    gc.collect()  # also empties CPython's free lists
    base = sys.getallocatedblocks()
    for _ in range(1000):
        step()
    gc.collect()
    grown = sys.getallocatedblocks() - base
    assert grown < 200, f"{grown} more memory blocks in use after 1000 steps"


def test_memory_of_a_step_with_create_graph_is_released_too():
    x = minidl.tensor(np.random.default_rng(0).standard_normal((20, 5)))
    w = minidl.tensor(np.ones((5, 3)), requires_grad=True)

    def hvp_step():
        loss = F.cross_entropy(F.gelu(x @ w), np.arange(20) % 3)
        (g,) = minidl.grad(loss, w, create_graph=True)
        minidl.grad((g * g).sum(), w)

    for _ in range(5):
        hvp_step()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(50):
            hvp_step()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 16 * 1024, f"memory grew by {grown} bytes over 50 Hessian steps"


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: minidl.ones(2, 3) * minidl.ones(4), r"mul: shapes \(2, 3\) and \(4,\)"),
        (lambda: minidl.ones(2, 3) - minidl.ones(3, 2), r"sub: shapes \(2, 3\) and \(3, 2\)"),
        (lambda: minidl.ones(2, 3) @ minidl.ones(2, 3), r"matmul: shapes \(2, 3\) and \(2, 3\) do not align"),
        (lambda: minidl.ones(2, 3).reshape(4), r"reshape: .*\(2, 3\).*\(4,\)"),
        (lambda: minidl.cat([minidl.ones(2, 3), minidl.ones(3, 2)]), r"cat: .*\(2, 3\), \(3, 2\)"),
        (lambda: minidl.ones(2, 3).sum(axis=2), r"sum: axis 2 is out of range"),
        (lambda: minidl.ones(2, 3)[5], r"getitem: .*shape \(2, 3\)"),
        (lambda: minidl.ones(3).max(axis=0) if False else minidl.zeros(0).max(), r"max: reduction over an empty"),
        (lambda: F.conv2d(minidl.ones(1, 3, 5, 5), minidl.ones(2, 4, 3, 3)), r"conv2d: input has 3 channels"),
        (lambda: F.linear(minidl.ones(2, 3), minidl.ones(4, 5)), r"linear: input has 3 features"),
        (lambda: F.cross_entropy(minidl.ones(2, 3), np.array([0, 3])), r"target 3 is out of range for 3 classes"),
        (lambda: F.cross_entropy(minidl.ones(2, 3), np.array([0, 1, 2])), r"targets of shape \(2,\)"),
        (lambda: F.mse_loss(minidl.ones(2, 1), minidl.ones(2)), r"mse_loss: input shape \(2, 1\) and target shape"),
        (lambda: minidl.where(np.ones((2, 3), bool), minidl.ones(4), 0.0), r"where: .*\(2, 3\)"),
    ],
)
def test_errors_name_the_op_and_the_shapes(make, pattern):
    with pytest.raises((ValueError, IndexError, RuntimeError), match=pattern):
        make()


def test_unsupported_dtypes_are_named():
    with pytest.raises(TypeError, match="complex128"):
        minidl.tensor(np.ones(2, dtype=complex))
    with pytest.raises(TypeError, match="<U1"):
        minidl.tensor(["a", "b"])
    with pytest.raises(TypeError, match="conv2d: input must be a floating-point tensor, got int64"):
        F.conv2d(minidl.tensor(np.ones((1, 1, 3, 3), dtype=np.int64)), minidl.ones(1, 1, 2, 2))
    with pytest.raises(TypeError, match=r"input is float64, weight is float32"):
        F.conv2d(minidl.ones(1, 1, 3, 3, dtype=np.float64), minidl.ones(1, 1, 2, 2))


def test_backward_on_a_non_scalar_explains_what_to_pass():
    y = f64(2, 3) * 2
    with pytest.raises(RuntimeError, match=r"non-scalar tensor of shape \(2, 3\).*gradient argument"):
        y.backward()
    y.backward(minidl.ones_like(y))


def test_backward_on_a_tensor_without_grad_explains():
    with pytest.raises(RuntimeError, match="does not require grad"):
        minidl.ones(2).sum().backward()


def test_in_place_write_into_a_tensor_that_requires_grad_is_refused():
    x = f64(3)
    with pytest.raises(RuntimeError, match="no_grad"):
        x[0] = 1.0
    with minidl.no_grad():
        x[0] = 1.0
    assert x.data[0] == 1.0


# ----------------------------------------------------------------------------- gradcheck itself
class _WrongGradient(Function):
    @staticmethod
    def forward(ctx, a):
        return a * a

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.inputs[0] * 2.001  # off by 0.05 %


@pytest.mark.parametrize("size", [5, 3000], ids=["elementwise", "directional"])
def test_gradcheck_catches_a_wrong_backward(size):
    x = f64(size)
    with pytest.raises(AssertionError, match="input 0"):
        gradcheck(_WrongGradient.apply, [x], max_elements=1000)
    assert gradcheck(lambda a: a * a, [x], max_elements=1000)


def test_gradcheck_directional_mode_on_a_large_conv():
    x, w = f64(2, 3, 12, 12), f64(4, 3, 3, 3, seed=1)
    assert gradcheck(lambda x, w: F.conv2d(x, w, padding=1, stride=2), [x, w], max_elements=100)


def test_gradgradcheck_catches_a_backward_that_is_not_differentiable():
    class Detaching(Function):  # correct first derivative, but cut from the graph
        @staticmethod
        def forward(ctx, a):
            return a * a

        @staticmethod
        def backward(ctx, grad):
            return minidl.Tensor(grad.data * 2 * ctx.inputs[0].data)

    with pytest.raises(AssertionError):
        minidl.gradgradcheck(Detaching.apply, [f64(4)])
