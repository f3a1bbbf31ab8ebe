"""Ops that move or select elements without arithmetic: reshape, permute, broadcast, indexing."""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl.autograd import Context, Function
from minidl.tensor import Tensor


class Reshape(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        ctx.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot reshape a tensor of shape {a.shape} ({a.size} elements) into shape {tuple(shape)}"
            ) from None

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return reshape(grad, ctx.shape)


class Permute(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
        if sorted(d % max(a.ndim, 1) for d in dims) != list(range(a.ndim)):
            raise ValueError(f"permute: {tuple(dims)} is not a permutation of {a.ndim} dimensions")
        ctx.dims = tuple(d % a.ndim for d in dims)
        return a.transpose(ctx.dims)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return permute(grad, tuple(np.argsort(ctx.dims)))


class BroadcastTo(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        ctx.shape = a.shape
        try:
            return np.broadcast_to(a, shape)
        except ValueError:
            raise ValueError(f"broadcast_to: cannot broadcast shape {a.shape} to {tuple(shape)}") from None

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        from minidl.ops.elementwise import unbroadcast

        return unbroadcast(grad, ctx.shape)


class GetItem(Function):
    """Basic and integer-array indexing; backward scatters (adds) into zeros of the input shape."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, index: Any) -> np.ndarray:
        ctx.shape = a.shape
        ctx.index = index
        return a[index]

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return IndexAdd.apply(grad, shape=ctx.shape, index=ctx.index)


class IndexAdd(Function):
    """Zeros of ``shape`` with ``values`` added at ``index`` (repeated indices accumulate)."""

    @staticmethod
    def forward(ctx: Context, values: np.ndarray, shape: tuple[int, ...], index: Any) -> np.ndarray:
        ctx.index = index
        out = np.zeros(shape, dtype=values.dtype)
        np.add.at(out, index, values)
        return out

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return getitem(grad, ctx.index)


def _unwrap_index(index: Any) -> Any:
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def reshape(a: Tensor, shape: tuple[int, ...]) -> Tensor:
    return Reshape.apply(a, shape=tuple(shape))


def flatten(a: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    nd = a.ndim
    if nd == 0:
        return reshape(a, (1,))
    s, e = start_dim % nd, end_dim % nd
    shape = a.shape[:s] + (int(np.prod(a.shape[s : e + 1])),) + a.shape[e + 1 :]
    return reshape(a, shape)


def permute(a: Tensor, dims: tuple[int, ...]) -> Tensor:
    return Permute.apply(a, dims=tuple(dims))


def transpose(a: Tensor, dim0: int = -2, dim1: int = -1) -> Tensor:
    dims = list(range(a.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return permute(a, tuple(dims))


def broadcast_to(a: Tensor, shape: tuple[int, ...]) -> Tensor:
    if a.shape == tuple(shape):
        return a
    return BroadcastTo.apply(a, shape=tuple(shape))


def getitem(a: Tensor, index: Any) -> Tensor:
    return GetItem.apply(a, index=_unwrap_index(index))
