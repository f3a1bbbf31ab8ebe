"""Scaled dot-product self-attention over heads as one op, from a packed query/key/value projection.

Written with primitive ops, multi-head self-attention is about twenty graph nodes per layer
(three weight slices and their scatter-add backwards, three linears, reshapes and transposes
per head split, two batched products, the scale, softmax, the head merge). At the transformer's
sizes (16 tokens, 8 features per head) those nodes' Python overhead and temporaries cost more
than the arithmetic. :class:`SelfAttention` takes the output of one projection of shape
(N, L, 3E) and returns the heads' results merged to (N, L, E): the splits are numpy views, the
backward writes the three gradients into one packed array. Under ``create_graph`` it
differentiates :func:`self_attention_reference`, the same computation in primitive ops.
"""

from __future__ import annotations

import numpy as np

from minidl.autograd import Context, Function, composite_backward
from minidl.grad_mode import is_grad_enabled
from minidl.ops.softmax import softmax, softmax_array, softmax_grad_array
from minidl.tensor import Tensor


def _heads(qkv: np.ndarray, heads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views (N, H, L, D) of the query, key and value parts of a packed (N, L, 3E) projection."""
    n, length, three_e = qkv.shape
    x = qkv.reshape(n, length, 3, heads, three_e // (3 * heads))
    return x[:, :, 0].transpose(0, 2, 1, 3), x[:, :, 1].transpose(0, 2, 1, 3), x[:, :, 2].transpose(0, 2, 1, 3)


class SelfAttention(Function):
    """``softmax(q k^T * scale + mask) v`` per head; (N, L, 3E) packed projections in, (N, L, E) out."""

    fresh_grads = True

    @staticmethod
    def forward(ctx: Context, qkv: np.ndarray, heads: int, scale: float, mask: np.ndarray | None = None) -> np.ndarray:
        n, length, three_e = qkv.shape
        q, k, v = _heads(qkv, heads)
        scores = np.matmul(q, k.transpose(0, 1, 3, 2))
        scores *= np.asarray(scale, scores.dtype)
        if mask is not None:
            scores += mask
        ctx.weights = softmax_array(scores)
        out = np.matmul(ctx.weights, v)  # (N, H, L, D)
        return out.transpose(0, 2, 1, 3).reshape(n, length, three_e // 3)

    @staticmethod
    def backward(ctx: Context, grad: Tensor) -> Tensor:
        if is_grad_enabled():  # create_graph: differentiate the primitive-op composition
            return composite_backward(self_attention_reference, ctx, grad)[0]
        qkv = ctx.inputs[0].data
        heads, scale, p = ctx.kwargs["heads"], ctx.kwargs["scale"], ctx.weights
        n, length, three_e = qkv.shape
        q, k, v = _heads(qkv, heads)
        g = grad.data.reshape(n, length, heads, three_e // (3 * heads)).transpose(0, 2, 1, 3)
        packed = np.empty((n, length, 3, heads, three_e // (3 * heads)), dtype=qkv.dtype)
        packed[:, :, 2] = np.matmul(p.transpose(0, 1, 3, 2), g).transpose(0, 2, 1, 3)
        ds = softmax_grad_array(p, np.matmul(g, v.transpose(0, 1, 3, 2)))
        ds *= np.asarray(scale, ds.dtype)
        packed[:, :, 0] = np.matmul(ds, k).transpose(0, 2, 1, 3)
        packed[:, :, 1] = np.matmul(ds.transpose(0, 1, 3, 2), q).transpose(0, 2, 1, 3)
        return Tensor._make(packed.reshape(qkv.shape))


def self_attention_reference(qkv: Tensor, heads: int, scale: float, mask: np.ndarray | None = None) -> Tensor:
    """:class:`SelfAttention` in primitive ops (what its ``create_graph`` backward differentiates)."""
    n, length, three_e = qkv.shape
    x = qkv.reshape(n, length, 3, heads, three_e // (3 * heads))
    q, k, v = (x[:, :, i].transpose(1, 2) for i in range(3))
    scores = (q @ k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores + mask
    return (softmax(scores, -1) @ v).transpose(1, 2).reshape(n, length, three_e // 3)


def self_attention(qkv: Tensor, heads: int, scale: float, mask: np.ndarray | None = None) -> Tensor:
    """Multi-head self-attention of a packed (N, L, 3E) projection (queries, keys, values in that
    order, each E = heads * D wide), scores scaled by ``scale`` plus the additive ``mask``
    (broadcastable to (N, heads, L, L)); returns (N, L, E)."""
    if qkv.ndim != 3 or qkv.shape[-1] % (3 * heads):
        raise ValueError(f"self_attention: expected (N, L, 3 * {heads} * D) projections, got shape {qkv.shape}")
    return SelfAttention.apply(qkv, heads=int(heads), scale=float(scale), mask=mask)
