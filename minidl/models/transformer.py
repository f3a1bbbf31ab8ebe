"""A tiny transformer encoder classifier for token sequences."""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl import nn, ops
from minidl.tensor import Tensor


class TransformerClassifier(nn.Module):
    """Token + learned position embeddings, ``num_layers`` pre-norm encoder layers (multi-head
    self-attention and an MLP), a final LayerNorm, pooling, and a linear head.

    Token and position embeddings start at N(0, 0.02^2) (GPT-2's choice). ``pool="mean"``
    averages the token states (ignoring padding when a ``padding_mask`` is given);
    ``pool="cls"`` prepends a learned [CLS] token and classifies its state. Inputs are (N, L)
    integer ids with L <= ``max_len``; ``padding_mask`` (N, L) is True at padding.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        max_len: int,
        d_model: int = 32,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 64,
        dropout: float = 0.0,
        pool: str = "mean",
    ) -> None:
        super().__init__()
        if pool not in ("mean", "cls"):
            raise ValueError(f"TransformerClassifier: pool must be 'mean' or 'cls', got {pool!r}")
        self.pool = pool
        self.max_len = max_len
        self.embed = nn.Embedding(vocab_size, d_model)
        # GPT-2-style small embeddings: at N(0, 1) (nn.Embedding's default) the tokens drown the
        # position signal and order-dependent tasks train far more slowly
        nn.init.normal_(self.embed.weight, std=0.02)
        self.pos_embed = nn.Parameter(np.zeros((1, max_len + (pool == "cls"), d_model), dtype=np.float32))
        nn.init.trunc_normal_(self.pos_embed, std=0.02, a=-0.04, b=0.04)
        if pool == "cls":
            self.cls_token = nn.Parameter(np.zeros((1, 1, d_model), dtype=np.float32))
            nn.init.trunc_normal_(self.cls_token, std=0.02, a=-0.04, b=0.04)

        def make_layer() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(
                d_model, nhead, dim_feedforward, dropout, activation="gelu", batch_first=True, norm_first=True
            )

        self.encoder = nn.TransformerEncoder(make_layer(), num_layers)
        for i in range(1, num_layers):  # PyTorch's copies start identical; give each layer its own init
            self.encoder.layers.add_module(str(i), make_layer())
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, ids: Any, padding_mask: Any = None) -> Tensor:
        arr = ids.data if isinstance(ids, Tensor) else np.asarray(ids)
        if arr.ndim != 2 or arr.shape[1] > self.max_len:
            raise ValueError(f"TransformerClassifier: expected ids of shape (N, L <= {self.max_len}), got {arr.shape}")
        n, length = arr.shape
        x = self.embed(arr)
        mask = None if padding_mask is None else np.asarray(getattr(padding_mask, "data", padding_mask), dtype=bool)
        if self.pool == "cls":
            x = _prepend(self.cls_token, x)
            if mask is not None:
                mask = np.concatenate([np.zeros((n, 1), dtype=bool), mask], axis=1)
            length += 1
        x = x + self.pos_embed[:, :length]
        x = self.norm(self.encoder(x, src_key_padding_mask=mask))
        if self.pool == "cls":
            return self.head(x[:, 0])
        if mask is None:
            return self.head(x.mean(axis=1))
        keep = (~mask).astype(x.dtype)[:, :, None]
        return self.head((x * keep).sum(axis=1) / np.maximum(keep.sum(axis=1), 1.0))


def _prepend(token: Tensor, x: Tensor) -> Tensor:
    n = x.shape[0]
    return ops.cat([ops.broadcast_to(token, (n, 1, x.shape[-1])), x], 1)
