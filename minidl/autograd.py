"""Reverse-mode automatic differentiation: the graph, the ``Function`` protocol, ``backward`` and ``grad``.

Every differentiable op is a :class:`Function` subclass that defines ``forward`` (numpy arrays in,
a numpy array out) and ``backward`` (the output gradient as a :class:`~minidl.tensor.Tensor` in,
one gradient per input out) side by side. ``backward`` is written with Tensor ops, so that with
``create_graph=True`` the gradient computation is itself recorded and can be differentiated again
(Hessian-vector products). Ops with a hand-fused numpy backward (conv2d, batch and layer norm,
cross-entropy) keep that fast path for ordinary backward and, under ``create_graph``,
differentiate a reference composition of primitive ops instead (:func:`composite_backward`).

Two engines compute the same thing. :func:`backward_reference` is the chain rule in twenty lines
(micrograd's: a depth-first topological sort, then one walk from the root summing each input's
gradient contributions); it is the oracle the tests hold the production engine to, op by op.
:func:`run_backward` is the production engine; it adds four things the reference leaves out:

* Order without recursion. A node is always created after the nodes of its inputs, so its
  creation number (``ctx.seq``) is a topological stamp: sorting the interior nodes newest first
  is a valid reverse order, found by an explicit stack, so a chain of any length works.
* Leaves finish early. ``_collect`` counts each leaf's consumers in the graph; ``deliver``
  counts them down, and when the last consumer has run, the leaf's gradient is complete: its
  hooks fire and ``.grad`` is written right then, while backward is still running elsewhere
  in the graph. Data-parallel training relies on that to start a bucket's allreduce during
  backward (``register_post_accumulate_grad_hook``); ``queue_callback`` runs once the
  outermost backward has finished (to wait for the last allreduce).
* The graph is freed as backward goes. Unless ``retain_graph`` is set, a node's ``__dict__``
  (saved arrays, input links, kwargs) is cleared the moment backward has passed through it,
  leaving only ``fn`` and ``freed=True``; so peak memory falls during backward instead of at
  the end of the step, and a second backward through the same graph raises a clear error.
* ``create_graph``. Grad mode is set to ``create_graph`` for the duration: with it off (the
  usual case) the ops called by each ``backward`` record nothing and gradient sums are plain
  numpy additions; with it on, every backward op and every sum is recorded, so the gradients
  have a graph of their own. ``grad(outputs, inputs)`` additionally stops at ``inputs``
  (``stop``) and skips nodes that lead to none of them (``_prune``).

Hooks: ``register_hook`` on a leaf fires once with the complete gradient (and may replace it)
before accumulation; on an interior tensor it fires when that tensor's gradient is complete,
which in newest-first order is when the tensor is reached. ``.grad`` is written in place when
it already exists (so views into a flat buffer stay valid) and as a fresh copy otherwise (an
op's backward may hand the same array to two inputs).
"""

from __future__ import annotations

import itertools
import operator
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from minidl import grad_mode
from minidl.grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from minidl.tensor import Tensor

__all__ = [  # grad mode is re-exported: torch.autograd has no_grad & co. too
    "Context",
    "Function",
    "backward",
    "backward_reference",
    "composite_backward",
    "enable_grad",
    "grad",
    "is_grad_enabled",
    "no_grad",
    "queue_callback",
    "run_backward",
    "set_grad_enabled",
]


class _EngineState(threading.local):
    """Backward bookkeeping, per thread (grad mode itself lives in :mod:`minidl.grad_mode`)."""

    depth = 0  # nesting of run_backward (fused ops differentiate a reference inside backward)

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []


_engine = _EngineState()
_mode = grad_mode.state  # read on every op: a module attribute lookup saved
_sequence = itertools.count()


class Context:
    """One op application: scratch space for ``forward``/``backward`` and the graph node of its output.

    ``inputs`` holds the op's positional arguments as given (Tensors stay Tensors), so a backward
    written with Tensor ops can differentiate through them; ``kwargs`` its keyword arguments;
    ``needs_input_grad`` a bool per positional argument. Anything else ``forward`` wants to keep
    for ``backward`` is stored as an attribute. ``output()`` returns the op's result Tensor
    (for functions with ``save_output = True``): a weak reference, because the output owns this
    node and a strong one would make a cycle that only the garbage collector could free.
    """

    # No __init__: apply() sets the attributes itself (creating a context is on every op's hot path).
    inputs: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}  # noqa: RUF012 (never mutated; apply() stores a fresh dict per op)
    fn: type[Function]
    seq: int
    freed = False
    needs_input_grad: tuple[bool, ...] = ()

    @property
    def name(self) -> str:
        return self.fn.__name__

    def output(self) -> Tensor:
        raise RuntimeError(f"{self.fn.__name__}: set save_output = True on the Function to use ctx.output()")

    def __repr__(self) -> str:
        return f"<{self.fn.__name__}Backward>" if "fn" in self.__dict__ else "<Context>"


Node = Context  # the graph node of a tensor is the context of the op that produced it
_new_object = object.__new__  # a bound builtin: faster than Tensor.__new__(Tensor), and skips __init__


class Function:
    """Base class of differentiable ops: subclass and define ``forward`` and ``backward``.

    ``forward(ctx, *args, **kwargs)`` receives Tensor arguments as numpy arrays (other arguments
    unchanged) and returns a numpy array. ``backward(ctx, grad)`` receives the gradient of the
    output as a Tensor and returns one gradient (Tensor, array or None) per positional argument,
    or a single gradient when there is one argument. Gradients are only needed for arguments
    whose ``ctx.needs_input_grad`` entry is True; return None for the others.
    """

    save_output = False  # keep a (weak) reference to the output for backward: ctx.output()
    # backward returns new arrays, one per input, that nothing else references; the engine may then
    # keep one as a leaf's .grad instead of copying it (a leaf's first .grad is otherwise a copy)
    fresh_grads = False

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Tensor:
        # The hot path of every op (``python -m minidl.bench --op-overhead`` measures it): plain attribute work only.
        ctx = Context()
        ctx.inputs = args
        ctx.kwargs = kwargs
        T = Tensor
        record = False
        arrays = []
        for a in args:
            if isinstance(a, T):
                if a.requires_grad:
                    record = True
                arrays.append(a.data)
            elif isinstance(a, np.generic):
                # numpy scalars act like Python numbers (weak), as in PyTorch: float32 * np.float64(2) stays float32
                arrays.append(a.item())
                ctx.inputs = tuple(x.item() if isinstance(x, np.generic) else x for x in args)
            else:
                arrays.append(a)
        out = cls.forward(ctx, *arrays, **kwargs)
        t = _new_object(T)
        t.data = out if type(out) is np.ndarray else np.asarray(out)
        if record and _mode.enabled:
            ctx.needs_input_grad = tuple([isinstance(a, T) and a.requires_grad for a in args])
            ctx.fn = cls
            ctx.seq = next(_sequence)
            t._node = ctx
            t.requires_grad = True
            if cls.save_output:
                ctx.output = weakref.ref(t)
        return t


def queue_callback(fn: Callable[[], None]) -> None:
    """Run ``fn()`` once the backward pass now in progress has finished (like PyTorch's
    ``Variable._execution_engine.queue_callback``). Data-parallel training uses it to wait for
    the last gradient allreduce before the optimizer step. Outside backward it runs at the end
    of the next one.
    """
    _engine.callbacks.append(fn)


_node_seq = operator.attrgetter("_node.seq")


def _collect(roots: Sequence[Tensor], stop: set[int] | None) -> tuple[list[Tensor], dict[int, int]]:
    """Non-leaf tensors reachable from ``roots`` (newest first), and for each leaf (or ``stop``
    tensor) its number of consumers in the graph, so backward knows when its gradient is complete.

    Traversal does not go past tensors whose id is in ``stop`` (the ``inputs`` of :func:`grad`).
    """
    pending: dict[int, int] = {}
    interior: list[Tensor] = []
    seen: set[int] = set()
    stack = []
    for t in roots:
        if t._node is not None and id(t) not in seen and (stop is None or id(t) not in stop):
            seen.add(id(t))
            stack.append(t)
    while stack:
        t = stack.pop()
        interior.append(t)
        node = t._node
        if node.freed:
            raise RuntimeError(
                f"backward through the graph a second time (op {node.name}): its saved values "
                "were freed by the first backward; pass retain_graph=True to the first call"
            )
        for inp, need in zip(node.inputs, node.needs_input_grad):
            if not need:
                continue
            key = id(inp)
            if inp._node is None or (stop is not None and key in stop):
                pending[key] = pending.get(key, 0) + 1
            elif key not in seen:
                seen.add(key)
                stack.append(inp)
    interior.sort(key=_node_seq, reverse=True)
    return interior, pending


def _prune(interior: list[Tensor], targets: set[int]) -> set[int]:
    """Ids of the tensors on some path to a target (so ``grad`` computes nothing else)."""
    live = set(targets)
    for t in reversed(interior):  # oldest first: a node's inputs are decided before the node
        node = t._node
        for inp, need in zip(node.inputs, node.needs_input_grad):
            if need and id(inp) in live:
                live.add(id(t))
                break
    return live


def _as_grad(value: Any, like: Tensor, op: Any) -> Tensor:
    """Validate a gradient computed for ``like`` and bring it to ``like``'s dtype."""
    g = value if isinstance(value, Tensor) else Tensor._make(np.asarray(value))
    if g.data.shape != like.data.shape:
        raise RuntimeError(f"backward of {op}: gradient of shape {g.shape} computed for an input of shape {like.shape}")
    if g.data.dtype != like.data.dtype:
        g = g.astype(like.data.dtype)
    return g


def _accumulate(prev: Tensor, g: Tensor, create_graph: bool) -> Tensor:
    """Sum of two gradient contributions; recorded only when the gradient must be differentiable."""
    if create_graph:
        return prev + g
    return Tensor._make(prev.data + g.data)


def run_backward(
    roots: Sequence[Tensor],
    root_grads: Sequence[Tensor],
    retain_graph: bool = False,
    create_graph: bool = False,
    inputs: Sequence[Tensor] | None = None,
    allow_unused: bool = False,
    run_hooks: bool = True,
) -> list[Tensor | None] | None:
    """Propagate ``root_grads`` from ``roots`` back through the graph.

    With ``inputs=None`` gradients are accumulated into the ``.grad`` of leaves (and of tensors
    that called ``retain_grad()``), as ``Tensor.backward`` does. Otherwise the gradients of
    ``inputs`` are returned, nothing is accumulated, and only the part of the graph between
    ``roots`` and ``inputs`` is visited, as ``grad`` does. ``run_hooks=False`` skips tensor
    hooks (for the engine's own nested differentiation).
    """
    capture: dict[int, Tensor | None] | None = None
    stop = None
    if inputs is not None:
        capture = {id(t): None for t in inputs}
        stop = set(capture)
    # interior: the non-leaf tensors, newest first (a valid reverse topological order);
    # pending: per leaf (or grad() input), how many graph edges will still bring it a gradient
    interior, pending = _collect(roots, stop)
    live = None if stop is None else _prune(interior, stop)
    # the gradient summed so far per tensor (by id); an interior entry is complete, and popped,
    # when the loop reaches that tensor, because all its consumers are newer and came first
    grads: dict[int, Tensor] = {}
    # ids of leaves whose summed gradient is an array nothing else references (a fresh_grads op's
    # result, or a sum made here): it can become .grad as it is
    owned: set[int] = set()

    def finish(t: Tensor, g: Tensor, own: bool = False) -> None:
        """``g`` is the complete gradient of ``t``: run hooks, then store or accumulate it.
        ``own``: nothing else references ``g``'s array, so a new ``.grad`` may take it without a copy."""
        if run_hooks and t._hooks:
            own = False  # a hook may have kept g, or returned an array of its own
            for hook in t._hooks:
                out = hook(g)
                if out is not None:
                    g = _as_grad(out, t, "hook")
        if capture is not None:
            if id(t) in capture:
                capture[id(t)] = g
            return
        if t._node is None or t._retains_grad:
            if create_graph:
                t.grad = g if t.grad is None else t.grad + g
            elif t.grad is None:
                # an op's backward may hand the same array (or a view of it) to several inputs:
                # .grad gets its own copy, so in-place updates (zero_grad, clipping, allreduce) stay local
                data = g.data
                if not (own and data.flags.c_contiguous and data.flags.writeable):
                    data = np.array(data, order="C", copy=True)
                t.grad = Tensor._make(data)
            else:
                old = t.grad.data
                if (
                    t.grad._node is None
                    and old.flags.writeable
                    and old.shape == g.data.shape
                    and old.dtype == g.data.dtype
                ):
                    np.add(old, g.data, out=old)  # in place, like PyTorch: views into a flat buffer stay valid
                else:
                    t.grad = Tensor._make(old + g.data)
            if run_hooks and t._post_hooks:
                for hook in t._post_hooks:
                    hook(t)

    def deliver(t: Tensor, g: Tensor | None, fresh: bool = False) -> None:
        """Add ``g`` to a leaf's (or a ``grad`` input's) gradient; finish it after its last consumer.
        ``fresh``: ``g`` came from a ``fresh_grads`` op (its array is referenced by ``g`` alone)."""
        key = id(t)
        if g is not None:
            prev = grads.get(key)
            if prev is None:
                grads[key] = g
                if fresh:
                    owned.add(key)
            else:
                grads[key] = _accumulate(prev, g, create_graph)
                owned.add(key)  # a new sum
        left = pending[key] - 1
        pending[key] = left
        if left == 0 and key in grads:
            finish(t, grads.pop(key), key in owned)

    engine = _engine
    prev_mode = _mode.enabled
    # create_graph is nothing but grad mode during backward: on, the Tensor ops that each
    # backward calls (and the sums in _accumulate) are recorded like any forward computation
    _mode.enabled = create_graph
    engine.depth += 1
    T = Tensor
    try:
        for root, g in zip(roots, root_grads, strict=True):
            key = id(root)
            if root._node is None or (stop is not None and key in stop):
                pending[key] = pending.get(key, 0) + 1
                deliver(root, g)
            else:
                prev = grads.get(key)
                grads[key] = g if prev is None else _accumulate(prev, g, create_graph)
        # The hot loop (``python -m minidl.bench --op-overhead``): interior gradients are summed inline; only
        # leaves go through deliver(), which counts down their consumers.
        for t in interior:
            node = t._node
            g = grads.pop(id(t), None)
            inputs_ = node.inputs
            fresh = False
            if g is None or (live is not None and id(t) not in live):
                # no gradient reached t (or, for grad(), t leads to no input): its inputs still
                # get a None each, so their consumer counts reach zero and they can finish
                in_grads: Any = (None,) * len(inputs_)
            else:
                if t._hooks is not None or t._retains_grad or capture is not None:
                    finish(t, g)  # an interior tensor's gradient is complete now: its hooks fire
                in_grads = node.fn.backward(node, g)
                fresh = node.fn.fresh_grads
                if type(in_grads) is not tuple:
                    in_grads = (in_grads,)
                if len(in_grads) < len(inputs_):
                    in_grads += (None,) * (len(inputs_) - len(in_grads))
            for inp, need, ig in zip(inputs_, node.needs_input_grad, in_grads):
                if not need:
                    continue
                if ig is not None:
                    if live is not None and id(inp) not in live:
                        ig = None
                    elif type(ig) is not T or ig.data.shape != inp.data.shape or ig.data.dtype != inp.data.dtype:
                        ig = _as_grad(ig, inp, node.fn.__name__)
                if inp._node is None or (stop is not None and id(inp) in stop):
                    deliver(inp, ig, fresh)
                elif ig is not None:
                    key = id(inp)
                    prev = grads.get(key)
                    grads[key] = ig if prev is None else _accumulate(prev, ig, create_graph)
            # Free the node now, not when the graph dies: its saved arrays (im2col columns, masks)
            # and its links to its inputs go, so memory falls while backward runs. Only fn and the
            # freed flag stay, so that a second backward through it raises a clear error.
            if not retain_graph:
                d = node.__dict__
                fn = d["fn"]
                d.clear()
                d["fn"] = fn
                d["freed"] = True
    finally:
        _mode.enabled = prev_mode
        engine.depth -= 1
    if engine.depth == 0:  # not inside a fused op's nested backward: the user's pass is over
        while engine.callbacks:
            engine.callbacks.pop(0)()
    if capture is not None:
        result = [capture[id(t)] for t in inputs]
        if not allow_unused:
            for i, (t, g) in enumerate(zip(inputs, result)):
                if g is None:
                    raise RuntimeError(
                        f"grad: input {i} (shape {t.shape}) is not used to compute the outputs "
                        "(or no gradient flows to it); pass allow_unused=True to get None for it"
                    )
        return result
    return None


def backward_reference(root: Tensor, grad: Tensor | None = None) -> None:
    """The chain rule and nothing else (micrograd's engine): the oracle :func:`run_backward` is tested against.

    Sorts the graph topologically (depth-first, inputs before the tensor that uses them), then
    walks it from ``root`` back to the leaves, handing each node's gradient to its op's backward
    and summing what comes back per input. Leaves' ``.grad`` accumulate. No hooks, no freeing,
    no ``create_graph``, no pruning; recursive, so only for graphs of modest depth.
    """
    order: list[Tensor] = []
    seen: set[int] = set()

    def visit(t: Tensor) -> None:
        if id(t) not in seen:
            seen.add(id(t))
            for inp, need in zip(t._node.inputs, t._node.needs_input_grad) if t._node else ():
                if need:
                    visit(inp)
            order.append(t)

    visit(root)
    grads = {id(root): Tensor._make(np.ones_like(root.data)) if grad is None else grad}
    with no_grad():
        for t in reversed(order):  # every consumer of t comes before t: its gradient is complete
            g = grads.pop(id(t), None)
            if g is None or t._node is None:
                if g is not None:
                    t.grad = g if t.grad is None else t.grad + g
                continue
            in_grads = t._node.fn.backward(t._node, g)
            for inp, need, ig in zip(t._node.inputs, t._node.needs_input_grad, _as_tuple(in_grads)):
                if need and ig is not None:
                    ig = _as_grad(ig, inp, t._node.name)
                    grads[id(inp)] = grads[id(inp)] + ig if id(inp) in grads else ig


def _as_tuple(x: Any) -> tuple[Any, ...]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _root_grads(outputs: tuple[Tensor, ...], grad_outputs: Any, who: str) -> list[Tensor]:
    given = (None,) * len(outputs) if grad_outputs is None else _as_tuple(grad_outputs)
    if len(given) != len(outputs):
        raise ValueError(f"{who}: {len(outputs)} outputs but {len(given)} grad_outputs")
    out = []
    for i, (o, g) in enumerate(zip(outputs, given)):
        if not isinstance(o, Tensor):
            raise TypeError(f"{who}: output {i} is a {type(o).__name__}, expected a Tensor")
        if not o.requires_grad:
            raise RuntimeError(
                f"{who}: output {i} does not require grad: no input of its computation has "
                "requires_grad=True (or it ran under no_grad())"
            )
        if g is None:
            if o.data.size != 1:
                raise RuntimeError(
                    f"{who}: output {i} is not a scalar (shape {o.shape}), so its gradient must be given: "
                    f"pass a tensor of shape {o.shape} (e.g. ones_like(output) to sum), or reduce it to a scalar first"
                )
            g = Tensor._make(np.ones_like(o.data))
        elif not isinstance(g, Tensor):
            g = Tensor._make(np.asarray(g, dtype=o.data.dtype))
        if g.shape != o.shape:
            raise RuntimeError(f"{who}: gradient of shape {g.shape} given for output {i} of shape {o.shape}")
        out.append(g)
    return out


def backward(
    tensors: Tensor | Sequence[Tensor],
    grad_tensors: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
) -> None:
    """Accumulate the gradients of ``tensors`` into the leaves' ``.grad`` (like ``torch.autograd.backward``)."""
    outputs = _as_tuple(tensors)
    roots = _root_grads(outputs, grad_tensors, "backward")
    retain = create_graph if retain_graph is None else retain_graph
    run_backward(outputs, roots, retain_graph=retain, create_graph=create_graph)


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> tuple[Tensor | None, ...]:
    """Gradients of ``outputs`` with respect to ``inputs``, returned rather than accumulated.

    Mirrors ``torch.autograd.grad``: ``grad_outputs`` (one per output; may be omitted for scalar
    outputs) weights each output, ``create_graph=True`` records the computation so the result
    can be differentiated again (Hessian-vector products), and ``retain_graph`` defaults to
    ``create_graph``. Leaves' ``.grad`` are left untouched. An input that does not influence
    the outputs raises unless ``allow_unused=True``, in which case its gradient is None.
    """
    outs = _as_tuple(outputs)
    ins = _as_tuple(inputs)
    for i, t in enumerate(ins):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError(f"grad: input {i} must be a Tensor with requires_grad=True")
    roots = _root_grads(outs, grad_outputs, "grad")
    retain = create_graph if retain_graph is None else retain_graph
    result = run_backward(
        outs, roots, retain_graph=retain, create_graph=create_graph, inputs=ins, allow_unused=allow_unused
    )
    return tuple(result)


def composite_backward(reference: Callable[..., Tensor], ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
    """Differentiable gradients of a fused op, from a reference composition of primitive ops.

    A fused op (e.g. conv2d with an im2col GEMM backward) calls this from ``backward`` when the
    gradient must itself be differentiable (``create_graph``): it re-runs ``reference`` (the same
    op written with Tensor ops, taking the same arguments) on the saved inputs and differentiates
    it, recording the graph. The fast numpy backward stays the default path.
    """
    wanted, seen = [], set()
    for i, need in enumerate(ctx.needs_input_grad):
        if need and id(ctx.inputs[i]) not in seen:  # a tensor passed twice gets its gradient once
            seen.add(id(ctx.inputs[i]))
            wanted.append(i)
    with set_grad_enabled(True):
        out = reference(*ctx.inputs, **ctx.kwargs)
        got = run_backward(
            [out],
            [grad],
            retain_graph=True,
            create_graph=True,
            inputs=[ctx.inputs[i] for i in wanted],
            allow_unused=True,
            run_hooks=False,
        )
    result: list[Tensor | None] = [None] * len(ctx.inputs)
    for i, g in zip(wanted, got):
        result[i] = g
    return tuple(result)
