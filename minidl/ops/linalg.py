"""Matrix multiplication (numpy's BLAS) with numpy's rules: batching, broadcasting, 1-D operands."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minidl.autograd import Context, Function, composite_backward
from minidl.grad_mode import is_grad_enabled
from minidl.ops.elementwise import unbroadcast
from minidl.tensor import Tensor


class MatMul(Function):
    fresh_grads = True  # two new products (or their unbroadcast sums)

    """``op(a) @ op(b)`` for operands with at least 2 dims (leading dims broadcast), where ``op``
    swaps the last two axes when ``ta``/``tb`` is set: backward needs products with transposes,
    and folding the transpose into the op saves two graph nodes per matmul."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray, ta: bool = False, tb: bool = False) -> np.ndarray:
        a_ = a.swapaxes(-1, -2) if ta else a
        b_ = b.swapaxes(-1, -2) if tb else b
        if a_.shape[-1] != b_.shape[-2]:
            raise ValueError(
                f"matmul: shapes {a_.shape} and {b_.shape} do not align ({a_.shape[-1]} columns vs {b_.shape[-2]} rows)"
            )
        try:
            return np.matmul(a_, b_)
        except ValueError:
            raise ValueError(f"matmul: batch dimensions of {a_.shape} and {b_.shape} cannot be broadcast") from None

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b = ctx.inputs
        na, nb = ctx.needs_input_grad
        ta, tb = ctx.kwargs.get("ta", False), ctx.kwargs.get("tb", False)
        # out = A @ B with A = op(a), B = op(b): dA = g @ B^T, dB = A^T @ g; transposed back when ta/tb
        ga = gb = None
        if na:
            ga = MatMul.apply(b, grad, ta=tb, tb=True) if ta else MatMul.apply(grad, b, tb=not tb)
            ga = unbroadcast(ga, a.shape)
        if nb:
            gb = MatMul.apply(grad, a, ta=True, tb=ta) if tb else MatMul.apply(a, grad, ta=not ta)
            gb = unbroadcast(gb, b.shape)
        return ga, gb


class Linear(Function):
    """``x @ weight.T + bias`` in one node: one GEMM (over all leading dimensions of ``x`` at once),
    the bias added into its result in place, and in backward three new arrays, the bias gradient
    a column sum. As two ops (MatMul, then a broadcast Add) the step paid for a second output
    array, an extra node, and an unbroadcast sum whose result the engine then copied."""

    fresh_grads = True

    @staticmethod
    def forward(ctx: Context, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
        if x.ndim == 2 and x.shape[0] <= x.shape[1]:
            # out^T = weight @ x^T, returned transposed (a column-major (rows, out) array): with no
            # more rows than features OpenBLAS runs this order faster, 4-15% for a row-major x and
            # up to 2x for a column-major one (a previous layer's output), and x @ weight^T is
            # faster for many rows of few features (docs/performance.md has the table)
            out_t = np.matmul(weight, x.T)
            if bias is not None:
                out_t = _add_bias(out_t, bias[:, None])
            return out_t.T
        rows = math.prod(x.shape[:-1])
        out = np.matmul(x.reshape(rows, x.shape[-1]), weight.T).reshape(*x.shape[:-1], weight.shape[0])
        return out if bias is None else _add_bias(out, bias)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        if is_grad_enabled():  # create_graph: differentiate the two-op composition instead
            return composite_backward(linear_reference, ctx, grad)
        x, weight = ctx.inputs[0].data, ctx.inputs[1].data
        need = ctx.needs_input_grad
        rows = math.prod(x.shape[:-1])
        g = grad.data.reshape(rows, weight.shape[0])
        gx = None
        if need[0]:  # in x's layout, so elementwise backward kernels meet operands of one layout
            gx = (weight.T @ g.T).T if x.ndim == 2 and not x.flags.c_contiguous else (g @ weight).reshape(x.shape)
            gx = Tensor._make(gx)
        gw = Tensor._make(g.T @ x.reshape(rows, x.shape[-1])) if need[1] else None
        gb = Tensor._make(g.sum(axis=0)) if len(need) > 2 and need[2] else None
        return gx, gw, gb


def _add_bias(out: np.ndarray, bias: np.ndarray) -> np.ndarray:
    if np.result_type(out, bias) == out.dtype:
        np.add(out, bias, out=out)  # out is ours: no second array
        return out
    return out + bias  # a wider bias widens the result, as out + bias would


def linear_reference(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """:class:`Linear` as primitive ops (what its ``create_graph`` backward differentiates)."""
    out = MatMul.apply(x, weight, tb=True)
    return out if bias is None else out + bias


def _as_tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor._make(np.asarray(x))


def matmul(a: Any, b: Any) -> Tensor:
    """``a @ b`` with numpy/PyTorch semantics: a 1-D left operand is a row, a 1-D right operand a column."""
    a, b = _as_tensor(a), _as_tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dimension, got shapes {a.shape} and {b.shape}")
    if a.ndim >= 2 and b.ndim >= 2:
        return MatMul.apply(a, b)
    a2 = a.reshape(1, a.shape[0]) if a.ndim == 1 else a
    b2 = b.reshape(b.shape[0], 1) if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align ({a.shape[-1]} vs {b2.shape[-2]})")
    out = MatMul.apply(a2, b2)
    shape = out.shape
    if a.ndim == 1:
        shape = shape[:-2] + shape[-1:]
    if b.ndim == 1:
        shape = shape[:-1]
    return out.reshape(shape)
