"""Numerical gradient checks in float64: the test oracle for every op's backward.

``gradcheck`` compares the analytic gradient of ``sum(W * fn(inputs))`` (``W`` fixed random
weights, so every output element matters) with central differences. Small inputs are checked
element by element; large ones along random directions, as Chainer's ``check_backward`` does:
one directional derivative costs two forward passes whatever the input size, and a wrong
gradient almost surely changes it. ``gradgradcheck`` applies the same check to the gradient
itself, computed with ``create_graph=True``, so it verifies second derivatives (what
Hessian-vector products use).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from minidl import autograd
from minidl.tensor import Tensor


def _outputs(result: Any) -> tuple[Tensor, ...]:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def _project(fn: Callable[..., Any], inputs: Sequence[Any], weights: list[np.ndarray]) -> float:
    """``sum(W * fn(inputs))`` as a float64 number, computed without recording a graph."""
    with autograd.no_grad():
        outs = _outputs(fn(*inputs))
    return float(sum(np.sum(w * np.asarray(o.data, dtype=np.float64)) for w, o in zip(weights, outs)))


def _fail(what: str, i: int, t: Tensor, got: np.ndarray, expected: np.ndarray, where: str) -> AssertionError:
    return AssertionError(
        f"{what}: input {i} (shape {t.shape}): analytic {got!r} vs numerical {expected!r} {where}; "
        "the op's backward disagrees with its forward"
    )


def gradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    max_elements: int = 512,
    directions: int = 2,
    seed: int = 0,
) -> bool:
    """Check ``fn``'s analytic gradients against float64 central differences.

    ``fn`` maps ``inputs`` to a Tensor (or a tuple of Tensors). Every input Tensor with
    ``requires_grad=True`` is checked; it must be float64. An input with at most
    ``max_elements`` elements is checked element by element, a larger one along ``directions``
    random unit directions (a directional derivative against the analytic gradient's dot
    product with the direction). Raises ``AssertionError`` naming the input and the worst
    element (or the direction) on failure; returns True otherwise. ``.grad`` is not touched.
    """
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, nothing to check")
    for i in checked:
        t = inputs[i]
        if t.dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {t.dtype}; checks need float64 inputs (finite differences)")
        if not t.data.flags.c_contiguous or not t.data.flags.writeable:
            t.data = np.array(t.data, order="C")  # perturbed in place below, so it must own its memory
    rng = np.random.default_rng(seed)
    with autograd.enable_grad():
        outs = _outputs(fn(*inputs))
    weights = [rng.standard_normal(o.shape) for o in outs]
    total = None
    for w, o in zip(weights, outs):
        if not isinstance(o, Tensor):
            raise TypeError(f"gradcheck: fn must return Tensors, got {type(o).__name__}")
        if not o.requires_grad:
            continue
        term = (o * Tensor._make(w.astype(o.dtype))).sum()
        total = term if total is None else total + term
    if total is None:  # nothing recorded: the analytic gradient is zero, which the numbers must confirm
        grads = [None] * len(checked)
    else:
        grads = autograd.grad(total, [inputs[i] for i in checked], allow_unused=True)
    for i, g in zip(checked, grads):
        t = inputs[i]
        got = np.zeros(t.shape) if g is None else np.asarray(g.data, dtype=np.float64)
        flat = t.data.reshape(-1)
        if t.size <= max_elements:
            expected = np.zeros(t.size)
            for k in range(t.size):
                orig = flat[k]
                flat[k] = orig + eps
                plus = _project(fn, inputs, weights)
                flat[k] = orig - eps
                minus = _project(fn, inputs, weights)
                flat[k] = orig
                expected[k] = (plus - minus) / (2 * eps)
            expected = expected.reshape(t.shape)
            if not np.allclose(got, expected, atol=atol, rtol=rtol, equal_nan=True):
                k = np.unravel_index(np.nanargmax(np.abs(got - expected)), t.shape)
                raise _fail("gradcheck", i, t, got[k], expected[k], f"at element {tuple(map(int, k))}")
        else:
            orig = flat.copy()
            for _ in range(directions):
                v = rng.standard_normal(t.size)
                v /= np.linalg.norm(v)
                flat[:] = orig + eps * v
                plus = _project(fn, inputs, weights)
                flat[:] = orig - eps * v
                minus = _project(fn, inputs, weights)
                flat[:] = orig
                expected_d = (plus - minus) / (2 * eps)
                got_d = float(np.dot(got.reshape(-1), v))
                if not np.isclose(got_d, expected_d, atol=atol, rtol=rtol):
                    raise _fail("gradcheck", i, t, got_d, expected_d, "along a random direction")
    return True


def gradgradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    max_elements: int = 512,
    directions: int = 2,
    seed: int = 1,
) -> bool:
    """Check second derivatives: ``gradcheck`` of the gradient that ``create_graph=True`` records.

    The gradient ``d sum(V * fn(x)) / dx`` is differentiated with respect to both ``x`` and the
    output weights ``V`` (so the backward's use of the incoming gradient is checked too). It
    also checks that the first derivatives computed with and without ``create_graph`` agree,
    since the two can take different code paths.
    """
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    rng = np.random.default_rng(seed)
    with autograd.enable_grad():
        outs = _outputs(fn(*inputs))
    vs = [Tensor(rng.standard_normal(o.shape), requires_grad=True, dtype=np.float64) for o in outs]

    def first_derivatives(*args: Any) -> tuple[Tensor, ...]:
        xs, ws = args[: len(inputs)], args[len(inputs) :]
        with autograd.enable_grad():  # also while gradcheck evaluates it for finite differences
            out = _outputs(fn(*xs))
            total = sum((o * w).sum() for o, w in zip(out, ws) if o.requires_grad)
            gs = autograd.grad(total, [xs[i] for i in checked], create_graph=True, allow_unused=True)
        return tuple(g for g in gs if g is not None)

    # the create_graph path must give the same first derivatives as the plain one
    plain_total = sum((o * Tensor._make(v.data)).sum() for o, v in zip(outs, vs) if o.requires_grad)
    plain = autograd.grad(plain_total, [inputs[i] for i in checked], allow_unused=True)
    with autograd.enable_grad():
        recorded = autograd.grad(
            sum((o * Tensor._make(v.data)).sum() for o, v in zip(_outputs(fn(*inputs)), vs) if o.requires_grad),
            [inputs[i] for i in checked],
            create_graph=True,
            allow_unused=True,
        )
    for i, a, b in zip(checked, plain, recorded):
        a_ = np.zeros(inputs[i].shape) if a is None else a.data
        b_ = np.zeros(inputs[i].shape) if b is None else b.data
        if not np.allclose(a_, b_, atol=atol, rtol=rtol):
            k = np.unravel_index(np.argmax(np.abs(a_ - b_)), a_.shape) if a_.size else ()
            raise AssertionError(
                f"gradgradcheck: input {i}: first derivative with create_graph ({b_[k]!r}) differs from "
                f"the plain backward ({a_[k]!r}) at {k}"
            )
    return gradcheck(
        first_derivatives, [*inputs, *vs], eps, atol, rtol, max_elements=max_elements, directions=directions, seed=seed
    )
