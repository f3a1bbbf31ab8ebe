"""Functional forms of layers, activations and losses, named and ordered like ``torch.nn.functional``.

Import as ``import minidl.functional as F``. Arguments after the ones PyTorch users pass
positionally are keyword-only here, so a call written for PyTorch either means the same thing
or fails loudly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl import ops
from minidl.ops.activation import gelu, leaky_relu, relu, sigmoid, silu, softplus, tanh
from minidl.ops.conv import conv2d, fold, unfold
from minidl.ops.dropout import dropout
from minidl.ops.embedding import embedding
from minidl.ops.linalg import Linear, MatMul
from minidl.ops.loss import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)
from minidl.ops.normalization import batch_norm, layer_norm
from minidl.ops.pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from minidl.ops.shape import pad
from minidl.tensor import Tensor

__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "conv2d",
    "cross_entropy",
    "dropout",
    "embedding",
    "fold",
    "gelu",
    "huber_loss",
    "l1_loss",
    "layer_norm",
    "leaky_relu",
    "linear",
    "log_softmax",
    "logsumexp",
    "max_pool2d",
    "mse_loss",
    "nll_loss",
    "one_hot",
    "pad",
    "relu",
    "sigmoid",
    "silu",
    "smooth_l1_loss",
    "softmax",
    "softplus",
    "tanh",
    "unfold",
]


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias`` with ``weight`` of shape (out_features, in_features)."""
    if input.shape[-1:] != weight.shape[-1:]:
        raise ValueError(
            f"linear: input has {input.shape[-1] if input.ndim else 0} features (shape {input.shape}) "
            f"but weight {weight.shape} expects {weight.shape[-1]}"
        )
    if input.ndim >= 2 and weight.ndim == 2:
        if bias is None:
            return Linear.apply(input, weight)
        if isinstance(bias, Tensor) and bias.shape == weight.shape[:1]:
            return Linear.apply(input, weight, bias)  # one fused node
        out = MatMul.apply(input, weight, tb=True)  # the transpose folded into the product
    else:
        out = ops.matmul(input, weight.mT if weight.ndim == 2 else weight)
    return out if bias is None else out + bias


def _dim(op: str, dim: int | None) -> int:
    if dim is None:
        raise TypeError(f"{op}: pass dim explicitly (e.g. dim=-1); PyTorch's implicit choice is deprecated")
    return int(dim)


def softmax(input: Tensor, dim: int | None = None, dtype: Any = None) -> Tensor:
    """Softmax along ``dim`` (computed after subtracting the maximum, so it never overflows)."""
    x = input.astype(dtype) if dtype is not None else input
    return ops.softmax(x, _dim("softmax", dim))


def log_softmax(input: Tensor, dim: int | None = None, dtype: Any = None) -> Tensor:
    """Log-softmax along ``dim``, numerically stable."""
    x = input.astype(dtype) if dtype is not None else input
    return ops.log_softmax(x, _dim("log_softmax", dim))


def logsumexp(input: Tensor, dim: Any, keepdim: bool = False) -> Tensor:
    return ops.logsumexp(input, dim, keepdim)


def one_hot(tensor: Any, num_classes: int = -1) -> Tensor:
    """Integer class ids -> int64 one-hot vectors in a new last dimension (``torch.nn.functional.one_hot``)."""
    ids = tensor.data if isinstance(tensor, Tensor) else np.asarray(tensor)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"one_hot: class ids must be integers, got {ids.dtype}")
    if num_classes < 0:
        num_classes = int(ids.max()) + 1 if ids.size else 0
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        raise ValueError(f"one_hot: class ids must be in [0, {num_classes}), got range [{ids.min()}, {ids.max()}]")
    return Tensor._make((ids[..., None] == np.arange(num_classes)).astype(np.int64))
