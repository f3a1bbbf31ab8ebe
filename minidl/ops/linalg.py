"""Matrix multiplication (numpy's BLAS) with numpy's rules: batching, broadcasting, 1-D operands."""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl.autograd import Context, Function
from minidl.ops.elementwise import unbroadcast
from minidl.tensor import Tensor


class MatMul(Function):
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
