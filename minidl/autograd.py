"""Reverse-mode automatic differentiation: the graph, the ``Function`` protocol and ``backward``.

Every differentiable op is a :class:`Function` subclass that defines ``forward`` (numpy arrays in,
a numpy array out) and ``backward`` (the output gradient as a :class:`~minidl.tensor.Tensor` in,
one gradient per input out) side by side. ``backward`` is written with Tensor ops where possible,
so that with ``create_graph=True`` the gradient computation is itself recorded and can be
differentiated again (Hessian-vector products).

The engine processes graph nodes in decreasing creation order, which is a valid reverse
topological order because a tensor is always created after its inputs. A leaf's gradient is
accumulated, and its hooks fire, as soon as its last consumer has been processed: data-parallel
training relies on that to start communication during backward.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from minidl.tensor import Tensor

_grad_enabled = True
_sequence = itertools.count()
_callbacks: list[Callable[[], None]] = []


def is_grad_enabled() -> bool:
    """Whether new operations are recorded for backward."""
    return _grad_enabled


class set_grad_enabled:
    """Context manager that turns graph recording on or off (like ``torch.set_grad_enabled``)."""

    def __init__(self, mode: bool) -> None:
        self.mode = bool(mode)
        self.prev = _grad_enabled

    def __enter__(self) -> None:
        global _grad_enabled
        self.prev = _grad_enabled
        _grad_enabled = self.mode

    def __exit__(self, *exc: object) -> None:
        global _grad_enabled
        _grad_enabled = self.prev


class no_grad(set_grad_enabled):
    """Context manager under which no graph is recorded (inference, optimizer updates)."""

    def __init__(self) -> None:
        super().__init__(False)


class enable_grad(set_grad_enabled):
    """Context manager that re-enables recording inside ``no_grad``."""

    def __init__(self) -> None:
        super().__init__(True)


class Context:
    """Per-call scratch space that ``forward`` fills and ``backward`` reads.

    ``inputs`` holds the op's arguments as given (Tensors stay Tensors), so a backward written
    with Tensor ops can differentiate through them; anything else is stored as attributes.
    """

    def __init__(self, inputs: tuple[Any, ...]) -> None:
        self.inputs = inputs
        self.needs_input_grad: tuple[bool, ...] = ()
        self.output: Tensor | None = None


class Node:
    """The record that links an output tensor to the op and inputs that produced it."""

    __slots__ = ("ctx", "fn", "freed", "inputs")

    def __init__(self, fn: type[Function], ctx: Context, inputs: tuple[Tensor | None, ...]) -> None:
        self.fn = fn
        self.ctx = ctx
        self.inputs = inputs
        self.freed = False

    @property
    def name(self) -> str:
        return self.fn.__name__


class Function:
    """Base class of differentiable ops: subclass and define ``forward`` and ``backward``.

    ``forward(ctx, *args, **kwargs)`` receives Tensor arguments as numpy arrays (other arguments
    unchanged) and returns a numpy array. ``backward(ctx, grad)`` receives the gradient of the
    output as a Tensor and returns a gradient (Tensor, array or None) per positional argument.
    """

    differentiable_backward = True

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Tensor:
        from minidl.tensor import Tensor

        ctx = Context(args)
        arrays = [a.data if isinstance(a, Tensor) else a for a in args]
        out = Tensor._make(cls.forward(ctx, *arrays, **kwargs))
        if _grad_enabled:
            needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
            if any(needs):
                ctx.needs_input_grad = needs
                out.requires_grad = True
                out._node = Node(cls, ctx, tuple(a if isinstance(a, Tensor) else None for a in args))
        return out


def queue_callback(fn: Callable[[], None]) -> None:
    """Run ``fn()`` once the backward pass now in progress has finished (like PyTorch's
    ``Variable._execution_engine.queue_callback``). Data-parallel training uses it to wait for
    the last gradient allreduce before the optimizer step. Outside backward it runs at the end
    of the next one.
    """
    _callbacks.append(fn)


def _collect(roots: Sequence[Tensor]) -> tuple[list[Tensor], dict[int, int]]:
    """Interior tensors reachable from ``roots`` and, for every tensor, its number of consumers."""
    pending: dict[int, int] = {}
    interior: list[Tensor] = []
    seen: set[int] = set()
    stack = [t for t in roots if t._node is not None]
    for t in stack:
        seen.add(id(t))
    while stack:
        t = stack.pop()
        interior.append(t)
        node = t._node
        if node.freed:
            raise RuntimeError(
                f"backward through the graph a second time (op {node.name}): its saved values "
                "were freed by the first backward; pass retain_graph=True to the first call"
            )
        for inp in node.inputs:
            if inp is None or not inp.requires_grad:
                continue
            pending[id(inp)] = pending.get(id(inp), 0) + 1
            if id(inp) not in seen and inp._node is not None:
                seen.add(id(inp))
                stack.append(inp)
    interior.sort(key=lambda t: t._seq, reverse=True)
    return interior, pending


def _as_grad(value: Any, like: Tensor) -> Tensor:
    from minidl.tensor import Tensor

    g = value if isinstance(value, Tensor) else Tensor._make(np.asarray(value))
    if g.shape != like.shape:
        raise RuntimeError(f"backward: gradient of shape {g.shape} computed for a tensor of shape {like.shape}")
    return g


def run_backward(
    roots: Sequence[Tensor],
    root_grads: Sequence[Tensor],
    retain_graph: bool = False,
    create_graph: bool = False,
    inputs: Sequence[Tensor] | None = None,
) -> list[Tensor | None] | None:
    """Propagate ``root_grads`` from ``roots`` back through the graph.

    With ``inputs=None`` gradients are accumulated into the ``.grad`` of leaves (``backward``);
    otherwise the gradients of ``inputs`` are returned and nothing is accumulated (``grad``).
    """
    capture = None if inputs is None else {id(t): None for t in inputs}
    grads: dict[int, Tensor] = {}
    interior, pending = _collect(roots)

    def deliver(t: Tensor, g: Tensor | None) -> None:
        key = id(t)
        if g is not None:
            prev = grads.get(key)
            grads[key] = g if prev is None else prev + g
        if t._node is None:  # a leaf: complete once all its consumers have delivered
            pending[key] -= 1
            if pending[key] == 0 and key in grads:
                finish(t, grads.pop(key))

    def finish(t: Tensor, g: Tensor) -> None:
        for hook in t._hooks or ():
            out = hook(g)
            if out is not None:
                g = _as_grad(out, t)
        if capture is not None:
            if id(t) in capture:
                capture[id(t)] = g
            return
        if t._node is None or t._retains_grad:
            if not create_graph:
                g = g.detach()
            t.grad = g if t.grad is None else t.grad + g
            for hook in t._post_hooks or ():
                hook(t)

    with set_grad_enabled(create_graph):
        for root, g in zip(roots, root_grads, strict=True):
            if root._node is None:
                pending[id(root)] = pending.get(id(root), 0) + 1
            deliver(root, g)
        for t in interior:
            node = t._node
            g = grads.pop(id(t), None)
            if g is None:  # no gradient flows here; still release the inputs' counts
                in_grads: tuple[Any, ...] = ()
            else:
                finish(t, g)
                in_grads = node.fn.backward(node.ctx, g)
                if not isinstance(in_grads, tuple):
                    in_grads = (in_grads,)
            in_grads = in_grads + (None,) * (len(node.inputs) - len(in_grads))
            for inp, ig in zip(node.inputs, in_grads):
                if inp is not None and inp.requires_grad:
                    deliver(inp, None if ig is None else _as_grad(ig, inp))
            if not retain_graph:
                node.freed = True
                node.ctx = None  # drop saved activations now, not when the graph dies
    while _callbacks:
        _callbacks.pop(0)()
    if capture is not None:
        return [capture[id(t)] for t in inputs]
    return None
