"""``MultiheadAttention``: scaled dot-product attention over several heads (Vaswani et al. 2017)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from minidl import functional as F
from minidl.nn import init
from minidl.nn.linear import Linear
from minidl.nn.module import Module, Parameter
from minidl.ops.attention import self_attention
from minidl.tensor import DEFAULT_DTYPE, Tensor


def _mask_array(mask: Any, dtype: np.dtype, name: str) -> np.ndarray:
    """A boolean mask (True = may not attend) or an additive float mask, as an additive array."""
    arr = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    if arr.dtype == np.bool_:
        return np.where(arr, -np.inf, 0.0).astype(dtype)
    if arr.dtype.kind == "f":
        return arr.astype(dtype, copy=False)
    raise TypeError(f"MultiheadAttention: {name} must be boolean or floating point, got {arr.dtype}")


def _additive_mask(
    attn_mask: Any, key_padding_mask: Any, dtype: np.dtype, n: int, h: int, tgt: int, src: int
) -> np.ndarray | None:
    """``attn_mask`` ((L, S) or (N * H, L, S)) plus ``key_padding_mask`` ((N, S)) as one additive
    array broadcastable to the scores (N, H, L, S), or None when there is neither."""
    total = None
    if attn_mask is not None:
        mask = _mask_array(attn_mask, dtype, "attn_mask")
        if mask.shape not in ((tgt, src), (n * h, tgt, src)):
            raise ValueError(f"MultiheadAttention: attn_mask shape {mask.shape}, expected {(tgt, src)}")
        total = mask.reshape((n, h, tgt, src) if mask.ndim == 3 else (tgt, src))
    if key_padding_mask is not None:
        mask = _mask_array(key_padding_mask, dtype, "key_padding_mask")
        if mask.shape != (n, src):
            raise ValueError(f"MultiheadAttention: key_padding_mask shape {mask.shape}, expected {(n, src)}")
        mask = mask.reshape(n, 1, 1, src)
        total = mask if total is None else total + mask
    return total


class MultiheadAttention(Module):
    """Multi-head attention with PyTorch's parameters: ``in_proj_weight`` (3E, E), ``in_proj_bias``
    (3E) and ``out_proj`` (a Linear E -> E).

    ``forward(query, key, value)`` returns ``(output, weights)``; inputs are (L, N, E), or (N, L, E)
    with ``batch_first=True``. ``attn_mask`` (L, S) and ``key_padding_mask`` (N, S) are boolean
    (True = masked out) or additive floats. ``weights`` are averaged over heads unless
    ``average_attn_weights=False``; ``need_weights=False`` returns None for them.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        dtype: Any = DEFAULT_DTYPE,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.in_proj_weight = Parameter(np.zeros((3 * embed_dim, embed_dim), dtype=dtype))
        self.register_parameter("in_proj_bias", Parameter(np.zeros(3 * embed_dim, dtype=dtype)) if bias else None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Any = None,
        need_weights: bool = True,
        attn_mask: Any = None,
        average_attn_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.ndim != 3 or t.shape[-1] != self.embed_dim:
                raise ValueError(
                    f"MultiheadAttention: {name} must be 3-D with {self.embed_dim} features last, got {t.shape}"
                )
        # self-attention whose weights nobody asks for: one projection and one fused op
        fused = query is key is value and not need_weights and not (self.training and self.dropout > 0)
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        n, tgt, e = query.shape
        src = key.shape[1]
        if key.shape[:2] != value.shape[:2] or key.shape[0] != n:
            raise ValueError(
                f"MultiheadAttention: key {key.shape} and value {value.shape} must match each other and the batch"
            )
        h, d = self.num_heads, self.head_dim
        w, b = self.in_proj_weight, self.in_proj_bias
        mask = _additive_mask(attn_mask, key_padding_mask, query.dtype, n, h, tgt, src)
        if fused:
            out = self.out_proj(self_attention(F.linear(query, w, b), h, 1.0 / math.sqrt(d), mask))
            return (out if self.batch_first else out.transpose(0, 1)), None

        def project(x: Tensor, i: int, length: int) -> Tensor:
            part = F.linear(x, w[i * e : (i + 1) * e], None if b is None else b[i * e : (i + 1) * e])
            return part.reshape(n, length, h, d).transpose(1, 2)  # (N, H, length, D)

        q = project(query, 0, tgt)
        k = project(key, 1, src)
        v = project(value, 2, src)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d))  # (N, H, L, S)
        if mask is not None:
            scores = scores + mask
        weights = F.softmax(scores, dim=-1)
        if self.training and self.dropout > 0:
            weights = F.dropout(weights, self.dropout, True)
        out = (weights @ v).transpose(1, 2).reshape(n, tgt, e)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, (weights.mean(axis=1) if average_attn_weights else weights)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"
