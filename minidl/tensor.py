"""``Tensor``: a numpy array that records the operations applied to it for reverse-mode autograd."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from minidl import autograd

DEFAULT_DTYPE = np.float32
_FLOAT_DTYPES = (np.float16, np.float32, np.float64)


class Tensor:
    """An n-dimensional array with an optional gradient, shaped like ``torch.Tensor``.

    ``data`` is the underlying numpy array; ``grad`` is a Tensor filled by ``backward``.
    """

    __slots__ = (
        "__weakref__",
        "_hooks",
        "_node",
        "_post_hooks",
        "_retains_grad",
        "_seq",
        "data",
        "grad",
        "requires_grad",
    )
    __array_priority__ = 1000  # so ndarray + Tensor defers to Tensor.__radd__

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        arr = _to_array(data, dtype)
        if requires_grad and arr.dtype.type not in _FLOAT_DTYPES:
            raise TypeError(f"only floating-point tensors can require gradients, got {arr.dtype}")
        self.data = arr
        self.grad: Tensor | None = None
        self.requires_grad = bool(requires_grad)
        self._node: autograd.Node | None = None
        self._seq = next(autograd._sequence)
        self._hooks: list[Callable[[Tensor], Tensor | None]] | None = None
        self._post_hooks: list[Callable[[Tensor], None]] | None = None
        self._retains_grad = False

    @classmethod
    def _make(cls, arr: np.ndarray) -> Tensor:
        """Wrap an op's result without copying or dtype conversion (the hot path)."""
        t = cls.__new__(cls)
        t.data = arr if isinstance(arr, np.ndarray) else np.asarray(arr)
        t.grad = None
        t.requires_grad = False
        t._node = None
        t._seq = next(autograd._sequence)
        t._hooks = None
        t._post_hooks = None
        t._retains_grad = False
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
    def grad_fn(self) -> str | None:
        """Name of the op that produced this tensor (None for leaves)."""
        return None if self._node is None else self._node.name

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        extra = f", grad_fn={self.grad_fn}" if self._node else ""
        extra += ", requires_grad=True" if self.requires_grad and not self._node else ""
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        return f"tensor({body}{extra})"

    # ----------------------------------------------------------------- conversion
    def numpy(self) -> np.ndarray:
        if self.requires_grad:
            raise RuntimeError("numpy() on a tensor that requires grad: call .detach().numpy()")
        return self.data

    def item(self) -> float | int:
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def tolist(self) -> Any:
        return self.data.tolist()

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor._make(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if self._node is not None and not requires_grad:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor: use detach()")
        if requires_grad and self.data.dtype.type not in _FLOAT_DTYPES:
            raise TypeError(f"only floating-point tensors can require gradients, got {self.dtype}")
        self.requires_grad = requires_grad
        return self

    def astype(self, dtype: Any) -> Tensor:
        from minidl.ops.elementwise import Cast

        return Cast.apply(self, dtype=np.dtype(dtype))

    def float(self) -> Tensor:
        return self.astype(np.float32)

    def double(self) -> Tensor:
        return self.astype(np.float64)

    # ----------------------------------------------------------------- autograd
    def backward(
        self,
        gradient: Any = None,
        retain_graph: bool | None = None,
        create_graph: bool = False,
    ) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``retain_graph`` (default: ``create_graph``) keeps the saved values so that backward
        can run through the same graph again; otherwise they are freed as backward goes,
        so memory does not grow across training steps.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the "
                "computation has requires_grad=True (or it ran under no_grad())"
            )
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() on a non-scalar tensor of shape {self.shape} needs a gradient "
                    "argument of that shape, e.g. y.backward(minidl.ones_like(y)), or reduce "
                    "it to a scalar first (y.sum().backward())"
                )
            gradient = Tensor._make(np.ones_like(self.data))
        elif not isinstance(gradient, Tensor):
            gradient = Tensor._make(np.asarray(gradient, dtype=self.dtype))
        if gradient.shape != self.shape:
            raise RuntimeError(f"backward(): gradient shape {gradient.shape} does not match tensor shape {self.shape}")
        retain = create_graph if retain_graph is None else retain_graph
        autograd.run_backward([self], [gradient], retain_graph=retain, create_graph=create_graph)

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> Callable[[], None]:
        """Call ``hook(grad)`` when this tensor's gradient is computed; it may return a new one.

        Returns a function that removes the hook.
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
        self._retains_grad = True

    def zero_(self) -> Tensor:
        self.data[...] = 0
        return self

    # ----------------------------------------------------------------- operators
    def __add__(self, other: Any) -> Tensor:
        return _ops().add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _ops().add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _ops().sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _ops().sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _ops().mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _ops().mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _ops().div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _ops().div(other, self)

    def __neg__(self) -> Tensor:
        return _ops().neg(self)

    def __pow__(self, exponent: Any) -> Tensor:
        return _ops().pow(self, exponent)

    def __rpow__(self, base: Any) -> Tensor:
        return _ops().pow(base, self)

    def __matmul__(self, other: Any) -> Tensor:
        return _ops().matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return _ops().matmul(other, self)

    def __getitem__(self, index: Any) -> Tensor:
        return _ops().getitem(self, index)

    # comparisons give plain boolean tensors (not differentiable)
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

    __hash__ = object.__hash__

    # ----------------------------------------------------------------- methods
    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _ops().sum(self, axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _ops().mean(self, axis, keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _ops().reshape(self, shape)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return _ops().flatten(self, start_dim, end_dim)

    def transpose(self, dim0: int = -2, dim1: int = -1) -> Tensor:
        return _ops().transpose(self, dim0, dim1)

    def permute(self, *dims: Any) -> Tensor:
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return _ops().permute(self, dims)

    @property
    def T(self) -> Tensor:
        return _ops().permute(self, tuple(reversed(range(self.ndim))))

    def exp(self) -> Tensor:
        return _ops().exp(self)

    def log(self) -> Tensor:
        return _ops().log(self)

    def relu(self) -> Tensor:
        return _ops().relu(self)

    def argmax(self, axis: int | None = None) -> Tensor:
        return Tensor._make(np.argmax(self.data, axis=axis))


def _ops() -> Any:
    from minidl import ops

    return ops


def _data(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _to_array(data: Any, dtype: Any) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.array(data, dtype=dtype)
    arr = np.array(data)
    if arr.dtype == np.float64 and not isinstance(data, np.ndarray):
        arr = arr.astype(DEFAULT_DTYPE)  # Python floats become float32, like torch.tensor
    if arr.dtype == object:
        raise TypeError(f"cannot make a tensor from {type(data).__name__}")
    return arr


# ------------------------------------------------------------------------- constructors
def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """A new tensor holding a copy of ``data`` (Python floats become float32, numpy keeps its dtype)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def zeros(*shape: Any, dtype: Any = DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    return Tensor(np.zeros(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def ones(*shape: Any, dtype: Any = DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    return Tensor(np.ones(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def full(shape: Any, value: float, dtype: Any = DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    return Tensor(np.full(_shape((shape,)), value, dtype=dtype), requires_grad=requires_grad)


def zeros_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.zeros_like(t.data, dtype=dtype), requires_grad=requires_grad)


def ones_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.ones_like(t.data, dtype=dtype), requires_grad=requires_grad)


def arange(start: float, stop: float | None = None, step: float = 1, dtype: Any = None) -> Tensor:
    if stop is None:
        start, stop = 0, start
    return Tensor(np.arange(start, stop, step, dtype=dtype))


def randn(*shape: Any, dtype: Any = DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    from minidl.random import generator

    arr = generator().standard_normal(_shape(shape)).astype(dtype)
    return Tensor(arr, requires_grad=requires_grad)


def rand(*shape: Any, dtype: Any = DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    from minidl.random import generator

    arr = generator().random(_shape(shape)).astype(dtype)
    return Tensor(arr, requires_grad=requires_grad)


def _shape(shape: Iterable[Any]) -> tuple[int, ...]:
    shape = tuple(shape)
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)
