"""Matrix multiplication (numpy's BLAS), with batching and broadcasting over leading dims."""

from __future__ import annotations

import numpy as np

from minidl.autograd import Context, Function
from minidl.tensor import Tensor


class MatMul(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"matmul: both operands need 2+ dims here, got shapes {a.shape} and {b.shape}")
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(
                f"matmul: shapes {a.shape} and {b.shape} do not align ({a.shape[-1]} columns vs {b.shape[-2]} rows)"
            )
        return a @ b

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        from minidl.ops.elementwise import unbroadcast

        a, b = ctx.inputs
        na, nb = ctx.needs_input_grad
        ga = unbroadcast(matmul(grad, b.transpose(-1, -2)), a.shape) if na else None
        gb = unbroadcast(matmul(a.transpose(-1, -2), grad), b.shape) if nb else None
        return ga, gb


def matmul(a: Tensor, b: Tensor) -> Tensor:
    if not isinstance(a, Tensor):
        a = Tensor._make(np.asarray(a))
    if not isinstance(b, Tensor):
        b = Tensor._make(np.asarray(b))
    return MatMul.apply(a, b)
