"""Ops that move, select or combine elements without arithmetic.

reshape/flatten/squeeze/unsqueeze, permute/transpose, broadcast_to, indexing (basic, boolean and
integer-array, with scatter-add in backward), gather, cat/stack/split/chunk, and pad.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from minidl import kernels
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
        nd = a.ndim
        if len(dims) != nd or sorted(d % nd if -nd <= d < nd else -1 for d in dims) != list(range(nd)):
            raise ValueError(f"permute: {tuple(dims)} is not a permutation of the {nd} dimensions of shape {a.shape}")
        ctx.dims = tuple(d % nd for d in dims)
        return a.transpose(ctx.dims)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return permute(grad, tuple(int(i) for i in np.argsort(ctx.dims)))


class SwapAxes(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, dim0: int, dim1: int) -> np.ndarray:
        try:
            return a.swapaxes(dim0, dim1)
        except (ValueError, np.exceptions.AxisError):
            raise ValueError(f"transpose: dims ({dim0}, {dim1}) out of range for a tensor of shape {a.shape}") from None

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return SwapAxes.apply(grad, **ctx.kwargs)


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


def _is_basic(index: Any) -> bool:
    """Whether ``index`` selects each element at most once (no integer arrays), so backward can assign."""
    items = index if isinstance(index, tuple) else (index,)
    for i in items:
        if isinstance(i, np.ndarray) and i.dtype != np.bool_:
            return False
    return True


class GetItem(Function):
    """Basic, boolean and integer-array indexing; backward scatters (adds) into zeros of the input shape."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, index: Any) -> np.ndarray:
        ctx.shape = a.shape
        try:
            return a[index]
        except IndexError as e:
            raise IndexError(f"getitem: {e} (tensor of shape {a.shape}, index {_describe(index)})") from None

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return IndexAdd.apply(grad, shape=ctx.shape, index=ctx.kwargs["index"])


def _integer_rows(index: Any, values: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether ``index`` is one integer array picking whole rows (first-axis entries) of ``shape``."""
    return (
        isinstance(index, np.ndarray)
        and index.dtype.kind in "iu"
        and len(shape) >= 2
        and values.shape == index.shape + tuple(shape[1:])
    )


class IndexAdd(Function):
    """Zeros of ``shape`` with ``values`` added at ``index`` (repeated indices accumulate): getitem's adjoint."""

    @staticmethod
    def forward(ctx: Context, values: np.ndarray, shape: tuple[int, ...], index: Any) -> np.ndarray:
        if _integer_rows(index, values, shape) and kernels.wanted(values):  # e.g. an embedding's backward
            n = shape[0]
            if index.size and (index.min() < -n or index.max() >= n):
                raise IndexError(f"index_add: indices must be in [-{n}, {n}), got [{index.min()}, {index.max()}]")
            idx = index.reshape(-1)
            idx = np.where(idx < 0, idx + n, idx) if idx.size and idx.min() < 0 else idx
            width = math.prod(shape[1:])
            return kernels.pooling.scatter_add_rows(values.reshape(idx.size, width), idx, n).reshape(shape)
        out = np.zeros(shape, dtype=values.dtype)
        if _is_basic(index):
            out[index] = values
        elif isinstance(index, np.ndarray) and index.ndim == 1 and len(shape) == 1 and index.dtype.kind in "iu":
            # the scatter-add of max pooling's backward: bincount is one pass, np.add.at several
            n = shape[0]
            if index.size and (index.min() < -n or index.max() >= n):
                raise IndexError(f"index_add: indices must be in [-{n}, {n}), got [{index.min()}, {index.max()}]")
            idx = np.where(index < 0, index + n, index) if index.size and index.min() < 0 else index
            out += np.bincount(idx, weights=values, minlength=n).astype(values.dtype, copy=False)
        else:
            np.add.at(out, index, values)
        return out

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return getitem(grad, ctx.kwargs["index"])


class Cat(Function):
    @staticmethod
    def forward(ctx: Context, *arrays: np.ndarray, axis: int = 0) -> np.ndarray:
        try:
            out = np.concatenate(arrays, axis=axis)
        except (ValueError, np.exceptions.AxisError) as e:
            shapes = ", ".join(str(np.shape(a)) for a in arrays)
            raise ValueError(f"cat: cannot concatenate shapes {shapes} along axis {axis} ({e})") from None
        ctx.axis = axis % out.ndim
        ctx.sizes = [np.shape(a)[ctx.axis] for a in arrays]
        return out

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        out: list[Tensor | None] = []
        start = 0
        lead = (slice(None),) * ctx.axis
        for size, need in zip(ctx.sizes, ctx.needs_input_grad):
            out.append(getitem(grad, (*lead, slice(start, start + size))) if need else None)
            start += size
        return tuple(out)


class Stack(Function):
    @staticmethod
    def forward(ctx: Context, *arrays: np.ndarray, axis: int = 0) -> np.ndarray:
        try:
            out = np.stack(arrays, axis=axis)
        except (ValueError, np.exceptions.AxisError) as e:
            shapes = ", ".join(str(np.shape(a)) for a in arrays)
            raise ValueError(f"stack: cannot stack shapes {shapes} along axis {axis} ({e})") from None
        ctx.axis = axis % out.ndim
        return out

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        lead = (slice(None),) * ctx.axis
        return tuple(getitem(grad, (*lead, i)) if need else None for i, need in enumerate(ctx.needs_input_grad))


class Pad(Function):
    """Constant padding by ``widths`` ((before, after) per dimension); backward crops."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, widths: tuple[tuple[int, int], ...], value: float = 0.0) -> np.ndarray:
        ctx.crop = tuple(slice(b, b + n) for (b, _), n in zip(widths, a.shape))
        return np.pad(a, widths, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return getitem(grad, ctx.crop)


def _describe(index: Any) -> str:
    items = index if isinstance(index, tuple) else (index,)
    return "(" + ", ".join(f"array{i.shape}" if isinstance(i, np.ndarray) else repr(i) for i in items) + ")"


def _unwrap_index(index: Any) -> Any:
    """A Tensor/list index as numpy would take it (lists and Tensors become arrays)."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, list):
        return np.asarray(index)
    if isinstance(index, tuple):
        return tuple(_unwrap_index(i) if isinstance(i, (Tensor, list)) else i for i in index)
    return index


def reshape(a: Tensor, shape: Sequence[int]) -> Tensor:
    shape = tuple(shape)
    if a.data.shape == shape:
        return a
    return Reshape.apply(a, shape=shape)


def flatten(a: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    nd = a.ndim
    if nd == 0:
        return reshape(a, (1,))
    s, e = start_dim % nd, end_dim % nd
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for {nd} dimensions")
    shape = a.shape[:s] + (math.prod(a.shape[s : e + 1]),) + a.shape[e + 1 :]
    return reshape(a, shape)


def squeeze(a: Tensor, dim: Any = None) -> Tensor:
    """Drop size-1 dimensions (all of them, or those in ``dim``; others in ``dim`` are kept, like PyTorch)."""
    if dim is None:
        dims = {i for i, n in enumerate(a.shape) if n == 1}
    else:
        nd = max(a.ndim, 1)
        dims = {d % nd for d in ((dim,) if isinstance(dim, int) else dim) if a.ndim and a.shape[d % nd] == 1}
    return reshape(a, tuple(n for i, n in enumerate(a.shape) if i not in dims))


def unsqueeze(a: Tensor, dim: int) -> Tensor:
    nd = a.ndim + 1
    if not -nd <= dim < nd:
        raise ValueError(f"unsqueeze: dim {dim} is out of range for a result with {nd} dimensions")
    d = dim % nd
    return reshape(a, a.shape[:d] + (1,) + a.shape[d:])


def permute(a: Tensor, dims: Sequence[int]) -> Tensor:
    return Permute.apply(a, dims=tuple(dims))


def transpose(a: Tensor, dim0: int = -2, dim1: int = -1) -> Tensor:
    """Swap two dimensions (a 0-d or 1-d tensor is returned as is, like PyTorch's ``.T``)."""
    if a.data.ndim < 2:
        return a
    return SwapAxes.apply(a, dim0=dim0, dim1=dim1)


def broadcast_to(a: Tensor, shape: Sequence[int]) -> Tensor:
    shape = tuple(shape)
    if a.data.shape == shape:
        return a
    return BroadcastTo.apply(a, shape=shape)


expand = broadcast_to


def getitem(a: Tensor, index: Any) -> Tensor:
    return GetItem.apply(a, index=_unwrap_index(index))


def index_add(shape: Sequence[int], index: Any, values: Tensor) -> Tensor:
    """Zeros of ``shape`` with ``values`` added at ``index`` (duplicates accumulate), differentiably."""
    return IndexAdd.apply(values, shape=tuple(shape), index=_unwrap_index(index))


def gather(a: Tensor, dim: int, index: Any) -> Tensor:
    """``out[i][j][k] = a[i][index[i][j][k]][k]`` for ``dim=1`` and so on (``torch.gather``)."""
    idx = index.data if isinstance(index, Tensor) else np.asarray(index)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"gather: index must hold integers, got {idx.dtype}")
    if idx.ndim != a.ndim:
        raise ValueError(f"gather: index has {idx.ndim} dimensions, input {a.ndim} (shapes {idx.shape}, {a.shape})")
    dim %= max(a.ndim, 1)
    grids = list(np.ix_(*[np.arange(n) for n in idx.shape])) if idx.ndim else []
    grids[dim] = idx
    return GetItem.apply(a, index=tuple(grids))


def cat(tensors: Sequence[Any], dim: int = 0, *, axis: int | None = None) -> Tensor:
    """Join tensors along an existing dimension (``torch.cat`` / ``numpy.concatenate``)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    return Cat.apply(*tensors, axis=dim if axis is None else axis)


concatenate = cat


def stack(tensors: Sequence[Any], dim: int = 0, *, axis: int | None = None) -> Tensor:
    """Join tensors along a new dimension (``torch.stack`` / ``numpy.stack``)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    return Stack.apply(*tensors, axis=dim if axis is None else axis)


def split(a: Tensor, split_size_or_sections: int | Sequence[int], dim: int = 0) -> list[Tensor]:
    """Pieces along ``dim`` of ``split_size_or_sections`` elements (the last may be smaller), or of the given sizes."""
    n = a.shape[dim]
    if isinstance(split_size_or_sections, (int, np.integer)):
        step = int(split_size_or_sections)
        if step <= 0:
            raise ValueError(f"split: split size must be positive, got {step}")
        sizes = [min(step, n - s) for s in range(0, n, step)] or [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise ValueError(f"split: sizes {sizes} do not add up to the {n} elements of dim {dim} (shape {a.shape})")
    lead = (slice(None),) * (dim % a.ndim)
    out, start = [], 0
    for s in sizes:
        out.append(getitem(a, (*lead, slice(start, start + s))))
        start += s
    return out


def chunk(a: Tensor, chunks: int, dim: int = 0) -> list[Tensor]:
    """``chunks`` pieces of ceil(n / chunks) elements (fewer pieces if n is small), like ``torch.chunk``."""
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    n = a.shape[dim]
    return split(a, max(math.ceil(n / chunks), 1), dim)


def _reflect_index(n: int, before: int, after: int, mode: str) -> np.ndarray:
    i = np.arange(-before, n + after)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    if mode == "circular":
        return i % n
    period = 2 * (n - 1)  # reflect, edge not repeated
    i = np.abs(i) % period if period else np.zeros_like(i)
    return np.where(i >= n, period - i, i)


def pad(a: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad (or, with negative widths, crop) the last dimensions, like ``torch.nn.functional.pad``.

    ``pad`` lists (before, after) pairs starting from the last dimension. ``mode`` is
    "constant" (with ``value``, default 0), "reflect", "replicate" or "circular".
    """
    pad = [int(p) for p in pad]
    if len(pad) % 2 or len(pad) // 2 > a.ndim:
        raise ValueError(f"pad: needs an even number of widths, at most 2 per dimension, got {pad} for shape {a.shape}")
    widths = [(0, 0)] * a.ndim
    for k in range(len(pad) // 2):
        widths[a.ndim - 1 - k] = (pad[2 * k], pad[2 * k + 1])
    if any(b < 0 or e < 0 for b, e in widths):
        if mode != "constant":
            raise ValueError(f"pad: negative widths are only supported in constant mode, got {pad}")
        crop = tuple(slice(-b if b < 0 else 0, n + e if e < 0 else n) for (b, e), n in zip(widths, a.shape))
        a = getitem(a, crop)
        widths = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        if not any(b or e for b, e in widths):
            return a
        return Pad.apply(a, widths=tuple(widths), value=0.0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise ValueError(f"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', got {mode!r}")
    for axis, (b, e) in enumerate(widths):
        if not (b or e):
            continue
        n = a.shape[axis]
        if mode == "reflect" and (b >= n or e >= n):
            raise ValueError(f"pad: reflect padding ({b}, {e}) must be smaller than dim {axis} of size {n}")
        if mode == "circular" and (b > n or e > n):
            raise ValueError(f"pad: circular padding ({b}, {e}) must not exceed dim {axis} of size {n}")
        if n == 0:
            raise ValueError(f"pad: cannot {mode}-pad the empty dim {axis} of shape {a.shape}")
        a = getitem(a, (slice(None),) * axis + (_reflect_index(n, b, e, mode),))
    return a
