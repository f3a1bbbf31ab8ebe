"""Loss functions with ``torch.nn.functional``'s names, arguments and reduction rules.

``cross_entropy`` with class-index targets is a fused op (log-softmax, pick, label smoothing and
class weights in one forward, ``softmax - target`` in one backward): the hottest op of a
classifier and the slot for a compiled kernel. Its reference composition
(:func:`cross_entropy_reference`) serves ``create_graph`` and tests. The other losses are
compositions of primitive ops.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl import kernels
from minidl.autograd import Context, Function, composite_backward
from minidl.grad_mode import is_grad_enabled
from minidl.ops.activation import softplus
from minidl.ops.elementwise import clip, log, where
from minidl.ops.shape import getitem
from minidl.ops.softmax import log_softmax
from minidl.tensor import Tensor

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(op: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _as_array(x: Any) -> np.ndarray:
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _class_last(op: str, input: Tensor, target: np.ndarray) -> tuple[Tensor, np.ndarray, tuple[int, ...]]:
    """(N, C, d1, ...) logits as (N*d1*..., C) rows, targets as a flat vector, plus the per-sample shape."""
    if input.ndim == 0:
        raise ValueError(f"{op}: input must have a class dimension, got a scalar")
    if input.ndim == 1:
        if target.ndim != 0:
            raise ValueError(f"{op}: unbatched input of shape {input.shape} needs a scalar target, got {target.shape}")
        return input.reshape(1, input.shape[0]), target.reshape(1), ()
    sample_shape = (input.shape[0], *input.shape[2:])
    if target.shape != sample_shape:
        raise ValueError(
            f"{op}: input of shape {input.shape} (classes in dim 1) needs targets of shape {sample_shape}, "
            f"got {target.shape}"
        )
    if input.ndim > 2:
        input = input.permute(0, *range(2, input.ndim), 1)
    return input.reshape(-1, input.shape[-1]), target.reshape(-1), sample_shape


def _check_targets(op: str, t: np.ndarray, classes: int, ignore_index: int) -> None:
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: class-index targets must be integers, got {t.dtype}")
    bad = (t != ignore_index) & ((t < 0) | (t >= classes))
    if bad.any():
        raise IndexError(
            f"{op}: target {t[bad][0]} is out of range for {classes} classes (ignore_index={ignore_index})"
        )


def _class_weights(op: str, weight: Any, classes: int, dtype: np.dtype) -> np.ndarray | None:
    if weight is None:
        return None
    w = _as_array(weight)
    if w.shape != (classes,):
        raise ValueError(f"{op}: weight must have shape ({classes},), got {w.shape}")
    return w.astype(dtype, copy=False)


def _ce_terms(target: np.ndarray, weight: np.ndarray | None, ignore_index: int, dtype: np.dtype):
    """Safe targets (ignored ones replaced by 0), and each sample's weight (0 when ignored)."""
    valid = target != ignore_index
    safe = np.where(valid, target, 0)
    wt = (np.ones(target.shape, dtype) if weight is None else weight[safe]) * valid
    return safe, valid.astype(dtype), wt.astype(dtype, copy=False)


class CrossEntropy(Function):
    """Fused cross-entropy over rows of logits (M, C) with integer targets (M,)."""

    @staticmethod
    def forward(
        ctx: Context,
        z: np.ndarray,
        target: np.ndarray,
        weight: np.ndarray | None,
        ignore_index: int,
        reduction: str,
        label_smoothing: float,
    ) -> np.ndarray:
        m, c = z.shape
        safe, valid, wt = _ce_terms(target, weight, ignore_index, z.dtype)
        eps = label_smoothing
        if kernels.wanted(z) and z.size:  # numba: log-softmax and the loss rows in one pass
            logp, loss = kernels.loss.cross_entropy(z, safe, valid, wt, weight, eps)
        else:
            shifted = z - z.max(axis=1, keepdims=True) if m and c else z
            logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            loss = (-(1.0 - eps) * wt) * logp[np.arange(m), safe]
            if eps:
                smooth = -(logp.sum(axis=1) if weight is None else logp @ weight)
                loss = loss + (eps / c) * valid * smooth
        ctx.logp, ctx.safe, ctx.valid, ctx.wt = logp, safe, valid, wt
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        ctx.denom = wt.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(loss.sum() / ctx.denom, dtype=z.dtype)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> tuple[Tensor | None, ...]:
        if is_grad_enabled():
            return composite_backward(cross_entropy_reference, ctx, grad)
        kw = ctx.kwargs
        weight, reduction, eps = kw["weight"], kw["reduction"], kw["label_smoothing"]
        m, c = ctx.logp.shape
        g = grad.data
        if reduction == "none":
            coef = g
        elif reduction == "sum":
            coef = np.full(m, g, dtype=g.dtype)
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                coef = np.full(m, g / ctx.denom, dtype=g.dtype)
        if kernels.wanted(g) and ctx.logp.size:  # numba: the formula below in one pass
            dz = kernels.loss.cross_entropy_backward(ctx.logp, ctx.safe, ctx.valid, ctx.wt, coef, weight, eps)
            return Tensor._make(dz)
        # d loss_n / d z_n = [(1-eps) w_t + (eps/C) sum(w) valid] softmax - (1-eps) w_t onehot(t) - (eps/C) valid w
        wsum = c if weight is None else weight.sum()
        a = (1.0 - eps) * ctx.wt + (eps / c) * wsum * ctx.valid
        dz = np.exp(ctx.logp) * (a * coef)[:, None]
        dz[np.arange(m), ctx.safe] -= (1.0 - eps) * ctx.wt * coef
        if eps:
            w = np.ones(c, dz.dtype) if weight is None else weight
            dz -= (eps / c) * (ctx.valid * coef)[:, None] * w[None, :]
        return Tensor._make(dz.astype(g.dtype, copy=False))


def cross_entropy_reference(
    z: Tensor,
    target: np.ndarray,
    weight: np.ndarray | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> Tensor:
    """Cross-entropy of rows of logits (M, C), composed of log_softmax, indexing and sums."""
    m, c = z.shape
    logp = log_softmax(z, -1)
    safe, valid, wt = _ce_terms(target, weight, ignore_index, z.dtype)
    eps = label_smoothing
    loss = getitem(logp, (np.arange(m), safe)) * (-(1.0 - eps) * wt)
    if eps:
        smooth = -(logp.sum(axis=1) if weight is None else logp @ weight)
        loss = loss + smooth * ((eps / c) * valid)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / wt.sum()


def cross_entropy(
    input: Tensor,
    target: Any,
    weight: Any = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy between logits and targets, like ``torch.nn.functional.cross_entropy``.

    ``input`` is (N, C), (N, C, d1, ...) or (C,); ``target`` holds class indices (N, d1, ...)
    or class probabilities of ``input``'s shape. ``weight`` rescales classes; ``ignore_index``
    targets contribute nothing; ``label_smoothing`` mixes the target with the uniform
    distribution. "mean" divides by the summed weights of the non-ignored targets.
    """
    op = "cross_entropy"
    _check_reduction(op, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    if input.dtype.kind != "f":
        raise TypeError(f"{op}: input must be floating-point logits, got {input.dtype}")
    t = _as_array(target)
    classes = input.shape[1] if input.ndim > 1 else input.shape[0]
    w = _class_weights(op, weight, classes, input.dtype)
    if t.dtype.kind == "f":
        return _soft_cross_entropy(input, target, w, reduction, label_smoothing)
    rows, flat_t, sample_shape = _class_last(op, input, t)
    _check_targets(op, flat_t, classes, ignore_index)
    loss = CrossEntropy.apply(
        rows,
        target=flat_t,
        weight=w,
        ignore_index=int(ignore_index),
        reduction=reduction,
        label_smoothing=float(label_smoothing),
    )
    return loss.reshape(sample_shape) if reduction == "none" else loss


def _soft_cross_entropy(input: Tensor, target: Any, w: np.ndarray | None, reduction: str, eps: float) -> Tensor:
    op = "cross_entropy"
    if _as_array(target).shape != input.shape:
        raise ValueError(f"{op}: probability targets must have the input's shape {input.shape}, got {target.shape}")
    class_dim = 1 if input.ndim > 1 else 0
    classes = input.shape[class_dim]
    q = target if isinstance(target, Tensor) else Tensor._make(np.asarray(target, input.dtype))
    if eps:
        q = q * (1.0 - eps) + eps / classes
    logp = log_softmax(input, class_dim)
    terms = logp * q
    if w is not None:
        terms = terms * w.reshape((classes,) + (1,) * (input.ndim - class_dim - 1))
    loss = -terms.sum(axis=class_dim)
    return _reduce(loss, reduction)


def nll_loss(
    input: Tensor,
    target: Any,
    weight: Any = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of class-index targets under log-probabilities, like ``torch.nn.functional.nll_loss``."""
    op = "nll_loss"
    _check_reduction(op, reduction)
    t = _as_array(target)
    classes = input.shape[1] if input.ndim > 1 else input.shape[0]
    rows, flat_t, sample_shape = _class_last(op, input, t)
    _check_targets(op, flat_t, classes, ignore_index)
    w = _class_weights(op, weight, classes, input.dtype)
    safe, _, wt = _ce_terms(flat_t, w, ignore_index, input.dtype)
    loss = getitem(rows, (np.arange(rows.shape[0]), safe)) * -wt
    if reduction == "none":
        return loss.reshape(sample_shape)
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / wt.sum()


def _same_shape(op: str, input: Tensor, target: Any) -> Tensor:
    """``target`` as a Tensor of ``input``'s shape; plain arrays take ``input``'s dtype (float64 labels
    must not silently turn a float32 model's loss into float64)."""
    if np.shape(_as_array(target)) != input.shape:
        raise ValueError(
            f"{op}: input shape {input.shape} and target shape {np.shape(_as_array(target))} differ "
            "(broadcasting them is almost always a bug; reshape one explicitly)"
        )
    return _like(target, input)


def _like(x: Any, input: Tensor) -> Any:
    """Constants (arrays, numbers) in ``input``'s dtype; Tensors unchanged; None stays None."""
    if x is None or isinstance(x, Tensor):
        return x
    return Tensor._make(np.asarray(x, dtype=input.dtype))


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean squared error, like ``torch.nn.functional.mse_loss`` (shapes must match)."""
    _check_reduction("mse_loss", reduction)
    target = _same_shape("mse_loss", input, target)
    diff = input - target
    return _reduce(diff * diff, reduction)


def l1_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean absolute error, like ``torch.nn.functional.l1_loss``."""
    _check_reduction("l1_loss", reduction)
    target = _same_shape("l1_loss", input, target)
    return _reduce((input - target).abs(), reduction)


def smooth_l1_loss(input: Tensor, target: Any, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """Quadratic below ``beta``, linear above (``torch.nn.functional.smooth_l1_loss``)."""
    _check_reduction("smooth_l1_loss", reduction)
    target = _same_shape("smooth_l1_loss", input, target)
    diff = input - target
    if beta == 0:
        return _reduce(diff.abs(), reduction)
    a = diff.abs()
    return _reduce(where(a.data < beta, diff * diff * (0.5 / beta), a - 0.5 * beta), reduction)


def huber_loss(input: Tensor, target: Any, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """Huber loss (``torch.nn.functional.huber_loss``): ``delta * smooth_l1(beta=delta)``."""
    _check_reduction("huber_loss", reduction)
    target = _same_shape("huber_loss", input, target)
    diff = input - target
    a = diff.abs()
    return _reduce(where(a.data < delta, diff * diff * 0.5, (a - 0.5 * delta) * delta), reduction)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Any,
    weight: Any = None,
    *,
    reduction: str = "mean",
    pos_weight: Any = None,
) -> Tensor:
    """Sigmoid + binary cross-entropy in one stable formula (``torch.nn.functional.binary_cross_entropy_with_logits``).

    ``loss = (1 - t) x + (1 + (pos_weight - 1) t) softplus(-x)``, which never exponentiates a large number.
    """
    op = "binary_cross_entropy_with_logits"
    _check_reduction(op, reduction)
    target = _same_shape(op, input, target)
    weight, pos_weight = _like(weight, input), _like(pos_weight, input)
    sp = softplus(-input, threshold=np.inf)
    if pos_weight is None:
        loss = (1.0 - target) * input + sp
    else:
        loss = (1.0 - target) * input + (1.0 + (pos_weight - 1.0) * target) * sp
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy(input: Tensor, target: Any, weight: Any = None, reduction: str = "mean") -> Tensor:
    """Binary cross-entropy of probabilities (``torch.nn.functional.binary_cross_entropy``); logs clamped at -100."""
    op = "binary_cross_entropy"
    _check_reduction(op, reduction)
    target = _same_shape(op, input, target)
    weight = _like(weight, input)
    if input.size and (input.data.min() < 0 or input.data.max() > 1):
        raise ValueError(f"{op}: all elements of input must be probabilities in [0, 1]")
    log_p = _clamped_log(input)
    log_q = _clamped_log(1.0 - input)
    loss = -(target * log_p + (1.0 - target) * log_q)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def _clamped_log(p: Tensor) -> Tensor:
    """``max(log p, -100)`` as PyTorch's BCE computes it, with a zero (not NaN) gradient where ``p == 0``."""
    positive = p.data > 0
    return where(positive, clip(log(where(positive, p, 1.0)), -100.0), -100.0)
