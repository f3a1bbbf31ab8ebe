"""``Tensor``: a numpy array that records the operations applied to it for reverse-mode autograd."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from minidl.grad_mode import is_grad_enabled

if TYPE_CHECKING:
    from minidl.autograd import Context

DEFAULT_DTYPE = np.float32
_FLOAT_DTYPES = (np.float16, np.float32, np.float64)
# numpy dtype kinds a Tensor may hold: bool, signed/unsigned int, float
_SUPPORTED_KINDS = "biuf"

float16, float32, float64 = np.float16, np.float32, np.float64
int8, int16, int32, int64, uint8, bool_ = np.int8, np.int16, np.int32, np.int64, np.uint8, np.bool_

_new_object = object.__new__  # creates an instance without running __init__, faster than cls.__new__(cls)
MaxResult = namedtuple("MaxResult", ["values", "indices"])  # what x.max(dim=...) returns, like torch


class Tensor:
    """An n-dimensional array with an optional gradient, shaped like ``torch.Tensor``.

    ``data`` is the underlying numpy array; ``grad`` is a Tensor filled by ``backward``.
    Reductions and shape methods accept numpy's spelling (``axis``, ``keepdims``) and PyTorch's
    (``dim``, ``keepdim``). ``size`` is numpy's element count (an attribute), ``shape`` the shape.
    """

    # Class-level defaults keep Tensor creation (the hot path of every op) to one attribute store.
    grad: Tensor | None = None
    requires_grad: bool = False
    _node: Context | None = None
    _hooks: list[Callable[[Tensor], Tensor | None]] | None = None
    _post_hooks: list[Callable[[Tensor], None]] | None = None
    _retains_grad: bool = False
    __array_priority__ = 1000  # so ndarray + Tensor defers to Tensor.__radd__

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        arr = _to_array(data, dtype)
        if requires_grad:
            _check_float(arr.dtype, "requires_grad=True")
            self.requires_grad = True
        self.data = arr

    @classmethod
    def _make(cls, arr: Any) -> Tensor:
        """Wrap an op's result without copying or dtype conversion (the hot path)."""
        t = _new_object(cls)
        t.data = arr if type(arr) is np.ndarray else np.asarray(arr)
        return t

    # ----------------------------------------------------------------- properties
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    def numel(self) -> int:
        return self.data.size

    def dim(self) -> int:
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self) -> Context | None:
        """The graph node of the op that produced this tensor (None for leaves); ``.name`` names the op."""
        return self._node

    @property
    def device(self) -> str:
        return "cpu"

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __iter__(self) -> Iterator[Tensor]:
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        for i in range(len(self.data)):
            yield self[i]

    def __bool__(self) -> bool:
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.data.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError(f"only one-element integer tensors can be used as an index, got {self.dtype} {self.shape}")
        return int(self.data.item())

    def __repr__(self) -> str:
        extra = ""
        if self.data.dtype not in (np.float32, np.int64, np.bool_):
            extra += f", dtype={self.data.dtype}"
        if self._node is not None:
            extra += f", grad_fn=<{self._node.name}Backward>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        return f"tensor({body}{extra})"

    # ----------------------------------------------------------------- conversion
    def numpy(self) -> np.ndarray:
        if self.requires_grad:
            raise RuntimeError("numpy() on a tensor that requires grad: call .detach().numpy()")
        return self.data

    def item(self) -> float | int | bool:
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def tolist(self) -> Any:
        return self.data.tolist()

    def detach(self) -> Tensor:
        """The same data (shared, not copied), cut from the graph."""
        return Tensor._make(self.data)

    def detach_(self) -> Tensor:
        """Cut this tensor from the graph in place (it becomes a leaf that does not require grad)."""
        self._node = None
        self.requires_grad = False
        return self

    def clone(self) -> Tensor:
        """A copy of the data that stays in the graph (gradients flow back to ``self``)."""
        return ops.clone(self)

    def contiguous(self) -> Tensor:
        return self

    def cpu(self) -> Tensor:
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if self._node is not None and not requires_grad:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor: use detach()")
        if requires_grad:
            _check_float(self.data.dtype, "requires_grad_()")
        self.requires_grad = bool(requires_grad)
        return self

    def astype(self, dtype: Any) -> Tensor:
        dtype = np.dtype(dtype)
        if dtype == self.data.dtype:
            return self
        return ops.cast(self, dtype)

    def to(self, dtype: Any) -> Tensor:
        """Convert to ``dtype`` (differentiable); devices other than the CPU do not exist here."""
        if isinstance(dtype, str) and dtype == "cpu":
            return self
        return self.astype(dtype)

    def type_as(self, other: Tensor) -> Tensor:
        return self.astype(other.dtype)

    def float(self) -> Tensor:
        return self.astype(np.float32)

    def double(self) -> Tensor:
        return self.astype(np.float64)

    def half(self) -> Tensor:
        return self.astype(np.float16)

    def long(self) -> Tensor:
        return Tensor._make(self.data.astype(np.int64))

    def int(self) -> Tensor:
        return Tensor._make(self.data.astype(np.int32))

    def bool(self) -> Tensor:
        return Tensor._make(self.data.astype(np.bool_))

    # ----------------------------------------------------------------- autograd
    def backward(
        self,
        gradient: Any = None,
        retain_graph: bool | None = None,
        create_graph: bool = False,
    ) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        A scalar needs no ``gradient``; any other shape needs one of the same shape (the weights
        of a vector-Jacobian product). ``retain_graph`` (default: ``create_graph``) keeps the
        saved values so that backward can run through the same graph again; otherwise they are
        freed as backward goes, so memory does not grow across training steps.
        ``create_graph=True`` records the backward computation, so the gradients in ``.grad``
        can themselves be differentiated (Hessian-vector products).
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the "
                "computation has requires_grad=True (or it ran under no_grad())"
            )
        if gradient is None and self.data.size != 1:
            raise RuntimeError(
                f"backward() on a non-scalar tensor of shape {self.shape} needs a gradient "
                "argument of that shape, e.g. y.backward(minidl.ones_like(y)), or reduce "
                "it to a scalar first (y.sum().backward())"
            )
        autograd.backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph)

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> Callable[[], None]:
        """Call ``hook(grad)`` when this tensor's gradient is computed; it may return a replacement.

        For a leaf it fires once the gradient is complete (summed over all uses), before it is
        accumulated into ``.grad``. Returns a function that removes the hook.
        """
        if not self.requires_grad:
            raise RuntimeError("register_hook on a tensor that does not require grad")
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return lambda: self._hooks.remove(hook)

    def register_post_accumulate_grad_hook(self, hook: Callable[[Tensor], None]) -> Callable[[], None]:
        """Call ``hook(tensor)`` right after backward has accumulated this leaf's ``.grad``.

        Fires as soon as the gradient is complete, while backward is still running elsewhere:
        data-parallel training uses it to start an allreduce early.
        """
        if not self.requires_grad:
            raise RuntimeError("register_post_accumulate_grad_hook on a tensor that does not require grad")
        if self._post_hooks is None:
            self._post_hooks = []
        self._post_hooks.append(hook)
        return lambda: self._post_hooks.remove(hook)

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor too."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad on a tensor that does not require grad")
        self._retains_grad = True

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    def zero_(self) -> Tensor:
        self.data[...] = 0
        return self

    def fill_(self, value: float) -> Tensor:
        self.data[...] = value
        return self

    def copy_(self, src: Any) -> Tensor:
        """Overwrite the data in place (not recorded: use it under no_grad or on plain tensors)."""
        _check_inplace(self, "copy_")
        self.data[...] = _data(src)
        return self

    def __setitem__(self, index: Any, value: Any) -> None:
        _check_inplace(self, "item assignment")
        self.data[ops.shape._unwrap_index(index)] = _data(value)

    # ----------------------------------------------------------------- operators
    def __add__(self, other: Any) -> Tensor:
        return _add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _div(other, self)

    def __neg__(self) -> Tensor:
        return _neg(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return ops.abs(self)

    def __pow__(self, exponent: Any) -> Tensor:
        return ops.pow(self, exponent)

    def __rpow__(self, base: Any) -> Tensor:
        return ops.pow(base, self)

    def __matmul__(self, other: Any) -> Tensor:
        return ops.matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return ops.matmul(other, self)

    def __getitem__(self, index: Any) -> Tensor:
        return ops.getitem(self, index)

    # comparisons and logic give plain (non-differentiable) tensors, like PyTorch
    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return Tensor._make(self.data == _data(other))

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return Tensor._make(self.data != _data(other))

    def __lt__(self, other: Any) -> Tensor:
        return Tensor._make(self.data < _data(other))

    def __le__(self, other: Any) -> Tensor:
        return Tensor._make(self.data <= _data(other))

    def __gt__(self, other: Any) -> Tensor:
        return Tensor._make(self.data > _data(other))

    def __ge__(self, other: Any) -> Tensor:
        return Tensor._make(self.data >= _data(other))

    def __invert__(self) -> Tensor:
        return Tensor._make(~self.data)

    def __and__(self, other: Any) -> Tensor:
        return Tensor._make(self.data & _data(other))

    def __or__(self, other: Any) -> Tensor:
        return Tensor._make(self.data | _data(other))

    __hash__ = object.__hash__

    # ----------------------------------------------------------------- reductions
    def sum(self, axis: Any = None, keepdims: bool = False, *, dim: Any = None, keepdim: bool | None = None) -> Tensor:
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        return ops.sum(self, axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False, *, dim: Any = None, keepdim: bool | None = None) -> Tensor:
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        return ops.mean(self, axis, keepdims)

    def max(self, axis: Any = None, keepdims: bool = False, *, dim: Any = None, keepdim: bool | None = None) -> Any:
        """Largest values over ``axis`` (numpy style). With ``dim=`` (PyTorch style) returns ``(values, indices)``."""
        if dim is not None:
            return _max_min_with_indices(self, dim, bool(keepdim), np.argmax)
        axis, keepdims = _axis_args(axis, keepdims, None, keepdim)
        return ops.max(self, axis, keepdims)

    def min(self, axis: Any = None, keepdims: bool = False, *, dim: Any = None, keepdim: bool | None = None) -> Any:
        """Smallest values over ``axis`` (numpy style). With ``dim=`` (PyTorch style) returns ``(values, indices)``."""
        if dim is not None:
            return _max_min_with_indices(self, dim, bool(keepdim), np.argmin)
        axis, keepdims = _axis_args(axis, keepdims, None, keepdim)
        return ops.min(self, axis, keepdims)

    def var(
        self,
        axis: Any = None,
        keepdims: bool = False,
        *,
        correction: int = 1,
        ddof: int | None = None,
        unbiased: bool | None = None,
        dim: Any = None,
        keepdim: bool | None = None,
    ) -> Tensor:
        """Variance over ``axis``; unbiased by default like PyTorch (``correction=1``; numpy's is ``ddof=0``)."""
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        return ops.var(self, axis, keepdims, _correction(correction, ddof, unbiased))

    def std(
        self,
        axis: Any = None,
        keepdims: bool = False,
        *,
        correction: int = 1,
        ddof: int | None = None,
        unbiased: bool | None = None,
        dim: Any = None,
        keepdim: bool | None = None,
    ) -> Tensor:
        """Standard deviation over ``axis``; unbiased by default like PyTorch (see ``var``)."""
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        return ops.std(self, axis, keepdims, _correction(correction, ddof, unbiased))

    def logsumexp(self, axis: Any = None, keepdims: bool = False, *, dim: Any = None, keepdim: bool | None = None):
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        return ops.logsumexp(self, axis, keepdims)

    def argmax(self, axis: int | None = None, keepdims: bool = False, *, dim: Any = None, keepdim: Any = None):
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        return Tensor._make(np.argmax(self.data, axis=axis, keepdims=keepdims))

    def argmin(self, axis: int | None = None, keepdims: bool = False, *, dim: Any = None, keepdim: Any = None):
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        return Tensor._make(np.argmin(self.data, axis=axis, keepdims=keepdims))

    # ----------------------------------------------------------------- shape
    def reshape(self, *shape: Any) -> Tensor:
        return ops.reshape(self, _shape_args(shape))

    def view(self, *shape: Any) -> Tensor:
        return ops.reshape(self, _shape_args(shape))

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return ops.flatten(self, start_dim, end_dim)

    def transpose(self, dim0: int = -2, dim1: int = -1) -> Tensor:
        return ops.transpose(self, dim0, dim1)

    def permute(self, *dims: Any) -> Tensor:
        return ops.permute(self, _shape_args(dims))

    @property
    def T(self) -> Tensor:
        return ops.permute(self, tuple(reversed(range(self.ndim))))

    @property
    def mT(self) -> Tensor:
        return ops.transpose(self, -2, -1)

    def squeeze(self, axis: Any = None, *, dim: Any = None) -> Tensor:
        return ops.squeeze(self, dim if dim is not None else axis)

    def unsqueeze(self, dim: int) -> Tensor:
        return ops.unsqueeze(self, dim)

    def expand(self, *shape: Any) -> Tensor:
        """Broadcast to ``shape``; -1 keeps a dimension's size (like ``torch.Tensor.expand``)."""
        shape = _shape_args(shape)
        lead = len(shape) - self.ndim
        full = tuple(self.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
        return ops.broadcast_to(self, full)

    def broadcast_to(self, *shape: Any) -> Tensor:
        return ops.broadcast_to(self, _shape_args(shape))

    def expand_as(self, other: Tensor) -> Tensor:
        return ops.broadcast_to(self, other.shape)

    def split(self, split_size_or_sections: Any, dim: int = 0) -> list[Tensor]:
        return ops.split(self, split_size_or_sections, dim)

    def chunk(self, chunks: int, dim: int = 0) -> list[Tensor]:
        return ops.chunk(self, chunks, dim)

    def masked_fill(self, mask: Any, value: float) -> Tensor:
        return ops.where(mask, Tensor._make(np.asarray(value, dtype=self.dtype)), self)

    def gather(self, dim: int, index: Any) -> Tensor:
        return ops.gather(self, dim, index)

    # ----------------------------------------------------------------- pointwise
    def exp(self) -> Tensor:
        return ops.exp(self)

    def log(self) -> Tensor:
        return ops.log(self)

    def sqrt(self) -> Tensor:
        return ops.sqrt(self)

    def abs(self) -> Tensor:
        return ops.abs(self)

    def tanh(self) -> Tensor:
        return ops.tanh(self)

    def sigmoid(self) -> Tensor:
        return ops.sigmoid(self)

    def relu(self) -> Tensor:
        return ops.relu(self)

    def pow(self, exponent: Any) -> Tensor:
        return ops.pow(self, exponent)

    def clip(self, min: Any = None, max: Any = None) -> Tensor:
        return ops.clip(self, min, max)

    clamp = clip

    def matmul(self, other: Any) -> Tensor:
        return ops.matmul(self, other)

    def softmax(self, dim: int) -> Tensor:
        return ops.softmax(self, dim)

    def log_softmax(self, dim: int) -> Tensor:
        return ops.log_softmax(self, dim)


def _data(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _check_float(dtype: np.dtype, what: str) -> None:
    if np.dtype(dtype).type not in _FLOAT_DTYPES:
        raise TypeError(f"{what}: only floating-point tensors (float16/32/64) can require gradients, got {dtype}")


def _check_inplace(t: Tensor, what: str) -> None:
    if t.requires_grad and is_grad_enabled():
        raise RuntimeError(
            f"{what} on a tensor that requires grad would silently corrupt its gradient: "
            "build a new tensor (minidl.where, cat, ...) or do it under minidl.no_grad()"
        )


def _to_array(data: Any, dtype: Any) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    elif isinstance(data, (list, tuple)) and any(isinstance(d, Tensor) for d in data):
        data = [_data(d) for d in data]
    if dtype is not None:
        try:
            arr = np.array(data, dtype=dtype)
        except (TypeError, ValueError) as e:
            raise TypeError(f"cannot make a tensor of dtype {dtype} from {type(data).__name__}: {e}") from None
    else:
        arr = np.array(data)
        if arr.dtype == np.float64 and not isinstance(data, np.ndarray) and not isinstance(data, np.floating):
            arr = arr.astype(DEFAULT_DTYPE)  # Python floats become float32, like torch.tensor
    if arr.dtype.kind not in _SUPPORTED_KINDS:
        raise TypeError(
            f"unsupported dtype {arr.dtype} (from {type(data).__name__}): minidl tensors hold "
            "float16/32/64, signed or unsigned integers, or bool"
        )
    return arr


def _axis_args(axis: Any, keepdims: Any, dim: Any, keepdim: Any) -> tuple[Any, bool]:
    if dim is not None:
        if axis is not None:
            raise TypeError("pass either axis or dim, not both")
        axis = dim
    if keepdim is not None:
        keepdims = keepdim
    return axis, bool(keepdims)


def _correction(correction: int, ddof: int | None, unbiased: bool | None) -> int:
    if ddof is not None:
        return int(ddof)
    if unbiased is not None:
        return 1 if unbiased else 0
    return int(correction)


def _shape_args(shape: tuple[Any, ...]) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _max_min_with_indices(t: Tensor, dim: int, keepdim: bool, arg: Any) -> MaxResult:
    """PyTorch's ``max(dim)``: values and indices; the gradient goes to the chosen index only."""
    idx = arg(t.data, axis=dim, keepdims=True)
    values = ops.gather(t, dim, idx)
    if not keepdim:
        values = values.squeeze(dim)
        idx = idx.squeeze(dim)
    return MaxResult(values, Tensor._make(idx))


# ------------------------------------------------------------------------- constructors
def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """A new tensor holding a copy of ``data`` (Python floats become float32, numpy arrays keep their dtype)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def as_tensor(data: Any, dtype: Any = None) -> Tensor:
    """Wrap ``data`` without copying when it already is a numpy array of the right dtype."""
    if isinstance(data, Tensor) and (dtype is None or data.dtype == np.dtype(dtype)):
        return data
    if isinstance(data, np.ndarray) and (dtype is None or data.dtype == np.dtype(dtype)):
        if data.dtype.kind not in _SUPPORTED_KINDS:
            raise TypeError(f"unsupported dtype {data.dtype}")
        return Tensor._make(data)
    return Tensor(data, dtype=dtype)


def _shape(shape: Iterable[Any]) -> tuple[int, ...]:
    shape = tuple(shape)
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    out = tuple(int(s) for s in shape)
    if any(s < 0 for s in out):
        raise ValueError(f"negative dimension in shape {out}")
    return out


def _new(arr: np.ndarray, requires_grad: bool) -> Tensor:
    if requires_grad:
        _check_float(arr.dtype, "requires_grad=True")
    t = Tensor._make(arr)
    if arr.dtype.kind not in _SUPPORTED_KINDS:
        raise TypeError(f"unsupported dtype {arr.dtype}: minidl tensors hold float, integer or bool")
    t.requires_grad = bool(requires_grad)
    return t


def zeros(*shape: Any, dtype: Any = DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    return _new(np.zeros(_shape(shape), dtype=dtype), requires_grad)


def ones(*shape: Any, dtype: Any = DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    return _new(np.ones(_shape(shape), dtype=dtype), requires_grad)


def empty(*shape: Any, dtype: Any = DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    return _new(np.empty(_shape(shape), dtype=dtype), requires_grad)


def full(shape: Any, fill_value: float, dtype: Any = DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    return _new(np.full(_shape((shape,)), fill_value, dtype=dtype), requires_grad)


def zeros_like(t: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _new(np.zeros_like(_data(t), dtype=dtype), requires_grad)


def ones_like(t: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _new(np.ones_like(_data(t), dtype=dtype), requires_grad)


def full_like(t: Any, fill_value: float, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return _new(np.full_like(_data(t), fill_value, dtype=dtype), requires_grad)


def eye(n: int, m: int | None = None, dtype: Any = DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    return _new(np.eye(n, m, dtype=dtype), requires_grad)


def arange(start: float, end: float | None = None, step: float = 1, dtype: Any = None) -> Tensor:
    """Like ``torch.arange``: integers give int64, any float argument gives float32 (unless ``dtype``)."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = np.int64 if is_int else DEFAULT_DTYPE
    return _new(np.arange(start, end, step, dtype=dtype), False)


def linspace(start: float, end: float, steps: int, dtype: Any = DEFAULT_DTYPE) -> Tensor:
    return _new(np.linspace(start, end, int(steps), dtype=dtype), False)


def randn(*shape: Any, dtype: Any = DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from minidl's seeded generator (``minidl.manual_seed``)."""
    from minidl.random import generator

    return _new(generator().standard_normal(_shape(shape)).astype(dtype), requires_grad)


def rand(*shape: Any, dtype: Any = DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    """Uniform [0, 1) samples from minidl's seeded generator (``minidl.manual_seed``)."""
    from minidl.random import generator

    return _new(generator().random(_shape(shape)).astype(dtype), requires_grad)


def randint(low: int, high: int | None = None, size: Any = (), dtype: Any = np.int64) -> Tensor:
    """Integers in [low, high) (or [0, low) when ``high`` is omitted), like ``torch.randint``."""
    from minidl.random import generator

    if high is None:
        low, high = 0, low
    return _new(generator().integers(low, high, size=_shape((size,)), dtype=dtype), False)


def randn_like(t: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return randn(*np.shape(_data(t)), dtype=dtype or _data(t).dtype, requires_grad=requires_grad)


def rand_like(t: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return rand(*np.shape(_data(t)), dtype=dtype or _data(t).dtype, requires_grad=requires_grad)


# The one upward dependency of the ground floor: Tensor's methods call the engine (backward) and
# the ops (operators, reductions, shapes). It comes last because those modules build on Tensor;
# minidl/__init__.py imports this module first, so the cycle always resolves in this order.
from minidl import autograd, ops  # noqa: E402

# the arithmetic operators call their Functions directly: one Python call less on the hottest path
_add = ops.elementwise.Add.apply
_sub = ops.elementwise.Sub.apply
_mul = ops.elementwise.Mul.apply
_div = ops.elementwise.Div.apply
_neg = ops.elementwise.Neg.apply
