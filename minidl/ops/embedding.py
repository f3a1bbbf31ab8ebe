"""Embedding lookup: rows of a weight matrix picked by integer ids (scatter-add in backward)."""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl.grad_mode import no_grad
from minidl.ops.elementwise import where
from minidl.ops.shape import getitem
from minidl.tensor import Tensor


def embedding(
    input: Any,
    weight: Tensor,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
) -> Tensor:
    """``weight[input]`` for integer ``input`` of any shape, like ``torch.nn.functional.embedding``.

    The row ``padding_idx`` receives no gradient. With ``max_norm``, the looked-up rows whose
    ``norm_type``-norm exceeds it are rescaled in place first (as PyTorch does).
    """
    ids = input.data if isinstance(input, Tensor) else np.asarray(input)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding: input must hold integer ids, got {ids.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be (num_embeddings, embedding_dim), got shape {weight.shape}")
    num = weight.shape[0]
    if ids.size and (ids.min() < 0 or ids.max() >= num):
        bad = ids.min() if ids.min() < 0 else ids.max()
        raise IndexError(f"embedding: id {bad} is out of range for {num} embeddings")
    if sparse:
        raise NotImplementedError("embedding: sparse gradients are not supported (use sparse=False)")
    if scale_grad_by_freq:
        raise NotImplementedError("embedding: scale_grad_by_freq is not supported")
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(f"embedding: padding_idx {padding_idx} is out of range for {num} embeddings")
        padding_idx %= num
    if max_norm is not None:
        with no_grad():
            rows = np.unique(ids)
            norms = np.linalg.norm(weight.data[rows], ord=norm_type, axis=1, keepdims=True)
            scale = np.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
            weight.data[rows] *= scale.astype(weight.dtype)
    out = getitem(weight, ids)
    if padding_idx is not None and weight.requires_grad:
        # same values, but the padding rows' gradient is cut
        out = where((ids == padding_idx)[..., None], out.detach(), out)
    return out
