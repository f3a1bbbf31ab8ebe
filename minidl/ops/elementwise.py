"""Elementwise arithmetic with numpy broadcasting, and pointwise math functions.

Binary ops accept Tensors, numpy arrays and Python scalars on either side (scalars are "weak":
``float32_tensor * 0.5`` stays float32, as in numpy 2 and PyTorch). Gradients are summed over
broadcast dimensions by :func:`unbroadcast`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl.autograd import Context, Function
from minidl.tensor import Tensor


def unbroadcast(grad: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum ``grad`` over the axes that broadcasting expanded, so it matches ``shape``."""
    gshape = grad.data.shape
    if gshape == shape:
        return grad
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and gshape[lead + i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape) if grad.data.shape != shape else grad


def _shape_of(x: Any) -> tuple[int, ...]:
    return x.data.shape if isinstance(x, Tensor) else np.shape(x)


def _broadcast_error(op: str, a: Any, b: Any, error: Exception) -> Exception:
    """The error for a failed binary op: name the op and both shapes when broadcasting was the problem."""
    sa, sb = np.shape(a), np.shape(b)
    try:
        np.broadcast_shapes(sa, sb)
    except ValueError:
        return ValueError(f"{op}: shapes {sa} and {sb} cannot be broadcast together")
    return error


class Binary(Function):
    """A binary ufunc under numpy broadcasting: the one forward of add, sub, mul, div, pow, maximum, minimum.

    Subclasses name their ufunc and write only ``backward`` (which sums the gradient back to each
    operand's shape with :func:`unbroadcast`). A failed broadcast names the op and both shapes.
    """

    ufunc: Any = None
    name = ""

    @classmethod
    def forward(cls, ctx: Context, a: Any, b: Any) -> np.ndarray:
        try:
            return cls.ufunc(a, b)
        except ValueError as e:
            raise _broadcast_error(cls.name, a, b, e) from None


class Add(Binary):
    ufunc, name = np.add, "add"

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b = ctx.inputs
        na, nb = ctx.needs_input_grad
        return (
            unbroadcast(grad, _shape_of(a)) if na else None,
            unbroadcast(grad, _shape_of(b)) if nb else None,
        )


class Sub(Binary):
    ufunc, name = np.subtract, "sub"

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b = ctx.inputs
        na, nb = ctx.needs_input_grad
        return (
            unbroadcast(grad, _shape_of(a)) if na else None,
            unbroadcast(-grad, _shape_of(b)) if nb else None,
        )


class Mul(Binary):
    ufunc, name = np.multiply, "mul"

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b = ctx.inputs
        na, nb = ctx.needs_input_grad
        return (
            unbroadcast(grad * b, _shape_of(a)) if na else None,
            unbroadcast(grad * a, _shape_of(b)) if nb else None,
        )


class Div(Binary):
    ufunc, name = np.true_divide, "div"
    save_output = True

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b = ctx.inputs
        na, nb = ctx.needs_input_grad
        ga = gb = None
        if na or nb:
            g_over_b = grad / b
            ga = unbroadcast(g_over_b, _shape_of(a)) if na else None
            gb = unbroadcast(-(g_over_b * ctx.output()), _shape_of(b)) if nb else None  # d(a/b)/db = -(a/b)/b
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        return np.negative(a)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return -grad


class Pow(Binary):
    ufunc, name = np.power, "pow"
    save_output = True

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b = ctx.inputs
        na, nb = ctx.needs_input_grad
        ga = gb = None
        if na:
            if isinstance(b, Tensor):
                ga = grad * b * a ** (b - 1)
            elif np.ndim(b) == 0 and b == 2:
                ga = grad * a * 2.0
            else:
                ga = grad * (b * a ** (np.asarray(b) - 1))
            ga = unbroadcast(ga, _shape_of(a))
        if nb:
            # d(a**b)/db = a**b * log(a); define it as 0 where a == 0 and b >= 0 (the limit), like PyTorch
            a_data = a.data if isinstance(a, Tensor) else np.asarray(a)
            b_data = b.data
            zero = (a_data == 0) & (b_data >= 0)
            log_a = log(a) if isinstance(a, Tensor) else Tensor._make(np.log(np.where(zero, 1, a_data)))
            term = ctx.output() * log_a
            if zero.any():
                term = where(zero, Tensor._make(np.zeros((), term.dtype)), term)
            gb = unbroadcast(grad * term, _shape_of(b))
        return ga, gb


class Exp(Function):
    save_output = True

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        return np.exp(a)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return grad * ctx.output()


class Log(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        return np.log(a)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return grad / ctx.inputs[0]


class Sqrt(Function):
    save_output = True

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        return np.sqrt(a)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return grad / (ctx.output() * 2.0)


class Abs(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        ctx.sign = np.sign(a)  # gradient 0 at 0, like PyTorch
        return np.abs(a)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return grad * ctx.sign


class Clip(Function):
    """``min(max(a, lo), hi)``; the gradient passes where ``lo <= a <= hi`` (bounds inclusive, like PyTorch)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, lo: Any = None, hi: Any = None) -> np.ndarray:
        if lo is None and hi is None:
            raise ValueError("clip: at least one of min and max must be given")
        inside = np.ones(a.shape, dtype=bool)
        if lo is not None:
            inside &= a >= lo
        if hi is not None:
            inside &= a <= hi
        ctx.inside = inside
        return np.clip(a, lo, hi)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return grad * ctx.inside.astype(grad.dtype)


class _Extremum(Binary):
    """Maximum or minimum of two operands; where they tie, each gets half the gradient (like PyTorch)."""

    wins: Any = None  # where operand a alone is chosen (np.greater for the maximum)

    @classmethod
    def forward(cls, ctx: Context, a: Any, b: Any) -> np.ndarray:
        out = super().forward(ctx, a, b)
        ctx.share_a = (cls.wins(a, b) + 0.5 * np.equal(a, b)).astype(out.dtype)
        return out

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b = ctx.inputs
        na, nb = ctx.needs_input_grad
        return (
            unbroadcast(grad * ctx.share_a, _shape_of(a)) if na else None,
            unbroadcast(grad * (1 - ctx.share_a), _shape_of(b)) if nb else None,
        )


class Maximum(_Extremum):
    ufunc, name, wins = np.maximum, "maximum", np.greater


class Minimum(_Extremum):
    ufunc, name, wins = np.minimum, "minimum", np.less


class Where(Function):
    """``a`` where ``cond`` is true, else ``b`` (all three broadcast together)."""

    @staticmethod
    def forward(ctx: Context, a: Any, b: Any, cond: np.ndarray) -> np.ndarray:
        try:
            return np.where(cond, a, b)
        except ValueError:
            raise ValueError(
                f"where: condition {np.shape(cond)} and operands {np.shape(a)}, {np.shape(b)} "
                "cannot be broadcast together"
            ) from None

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        a, b = ctx.inputs
        cond = ctx.kwargs["cond"]
        na, nb = ctx.needs_input_grad
        zero = Tensor._make(np.zeros((), grad.dtype))
        return (
            unbroadcast(Where.apply(grad, zero, cond=cond), _shape_of(a)) if na else None,
            unbroadcast(Where.apply(zero, grad, cond=cond), _shape_of(b)) if nb else None,
        )


class Cast(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray, dtype: np.dtype) -> np.ndarray:
        ctx.src = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return Cast.apply(grad, dtype=ctx.src)


class Clone(Function):
    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        return a.copy()

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        return grad


def add(a: Any, b: Any) -> Tensor:
    return Add.apply(a, b)


def sub(a: Any, b: Any) -> Tensor:
    return Sub.apply(a, b)


def mul(a: Any, b: Any) -> Tensor:
    return Mul.apply(a, b)


def div(a: Any, b: Any) -> Tensor:
    return Div.apply(a, b)


def neg(a: Tensor) -> Tensor:
    return Neg.apply(a)


def pow(a: Any, b: Any) -> Tensor:
    return Pow.apply(a, b)


def exp(a: Tensor) -> Tensor:
    return Exp.apply(a)


def log(a: Tensor) -> Tensor:
    return Log.apply(a)


def sqrt(a: Tensor) -> Tensor:
    return Sqrt.apply(a)


def abs(a: Tensor) -> Tensor:
    return Abs.apply(a)


def clip(a: Tensor, min: Any = None, max: Any = None) -> Tensor:
    """Limit values to [min, max] (either bound may be None), like ``torch.clamp``."""
    return Clip.apply(a, lo=min, hi=max)


clamp = clip


def maximum(a: Any, b: Any) -> Tensor:
    return Maximum.apply(a, b)


def minimum(a: Any, b: Any) -> Tensor:
    return Minimum.apply(a, b)


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """Elementwise ``a if condition else b`` (``torch.where``); gradients flow to ``a`` and ``b``."""
    cond = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    if cond.dtype != np.bool_:
        cond = cond.astype(bool)
    return Where.apply(a, b, cond=cond)


def cast(a: Tensor, dtype: Any) -> Tensor:
    return Cast.apply(a, dtype=np.dtype(dtype))


def clone(a: Tensor) -> Tensor:
    return Clone.apply(a)
