"""Dropout: zero elements with probability ``p`` and scale the rest by 1/(1-p) (inverted dropout)."""

from __future__ import annotations

import numpy as np

from minidl.random import generator
from minidl.tensor import Tensor


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Like ``torch.nn.functional.dropout``; the mask comes from minidl's seeded generator.

    Returns ``input`` itself when not training or ``p == 0``. ``inplace`` is accepted for
    signature compatibility; a new tensor is always returned.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    if input.dtype.kind != "f":
        raise TypeError(f"dropout: input must be a floating-point tensor, got {input.dtype}")
    if p == 1.0:
        return input * np.zeros((), input.dtype)
    keep = generator().random(input.shape, dtype=np.float32 if input.dtype != np.float64 else np.float64) >= p
    scale = np.asarray(1.0 / (1.0 - p), dtype=input.dtype)
    return input * (keep * scale)
