"""``Embedding``: a lookup table from integer ids to learned vectors."""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl import functional as F
from minidl.nn import init
from minidl.nn.module import Module, Parameter
from minidl.tensor import DEFAULT_DTYPE, Tensor


class Embedding(Module):
    """Maps ids of any shape to vectors: output shape = input shape + (embedding_dim,).

    ``weight`` is (num_embeddings, embedding_dim), initialised N(0, 1) like PyTorch; the row at
    ``padding_idx`` (if given) starts at zero and receives no gradient.
    """

    def __init__(
        self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, dtype: Any = DEFAULT_DTYPE
    ) -> None:
        super().__init__()
        if num_embeddings < 1 or embedding_dim < 1:
            raise ValueError(f"Embedding: sizes must be >= 1, got ({num_embeddings}, {embedding_dim})")
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} out of range for {num_embeddings} embeddings")
            padding_idx %= num_embeddings
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.weight = Parameter(np.zeros((num_embeddings, embedding_dim), dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, ids: Any) -> Tensor:
        arr = ids.data if isinstance(ids, Tensor) else np.asarray(ids)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"Embedding: ids must be integers, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.num_embeddings):
            raise IndexError(
                f"Embedding: id out of range [0, {self.num_embeddings}): found ids from {arr.min()} to {arr.max()}"
            )
        ids = ids if isinstance(ids, Tensor) else Tensor._make(arr)
        return F.embedding(ids, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s if self.padding_idx is None else s + f", padding_idx={self.padding_idx}"
