"""Functional forms of layers and losses, named and ordered like ``torch.nn.functional``.

Import as ``import minidl.functional as F``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl import ops
from minidl.ops import log_softmax, relu
from minidl.tensor import Tensor

__all__ = ["cross_entropy", "linear", "log_softmax", "nll_loss", "relu"]


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias`` with ``weight`` of shape (out_features, in_features)."""
    out = ops.matmul(input, weight.transpose(-1, -2))
    return out if bias is None else out + bias


def _targets(target: Any, n: int, classes: int) -> np.ndarray:
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy/nll_loss: targets must be integer class indices, got {t.dtype}")
    if t.shape != (n,):
        raise ValueError(f"cross_entropy/nll_loss: targets of shape {t.shape} for a batch of {n}")
    if t.size and (t.min() < 0 or t.max() >= classes):
        raise ValueError(f"cross_entropy/nll_loss: target {t.max()} out of range for {classes} classes")
    return t


def nll_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of integer ``target`` under log-probabilities ``input`` (N, C)."""
    if input.ndim != 2:
        raise ValueError(f"nll_loss: expected log-probabilities of shape (N, C), got {input.shape}")
    n, c = input.shape
    t = _targets(target, n, c)
    picked = -input[np.arange(n), t]
    if reduction == "mean":
        return picked.mean()
    if reduction == "sum":
        return picked.sum()
    if reduction == "none":
        return picked
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def cross_entropy(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Cross-entropy of logits ``input`` (N, C) against integer class ``target`` (N,)."""
    return nll_loss(log_softmax(input, -1), target, reduction=reduction)
