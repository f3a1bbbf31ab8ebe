"""``Dropout``: zero inputs with probability p in training, scale the rest by 1/(1-p)."""

from __future__ import annotations

from minidl import functional as F
from minidl.nn.module import Module
from minidl.tensor import Tensor


class Dropout(Module):
    """Inverted dropout (Srivastava et al. 2014); the identity in eval mode.

    The mask comes from minidl's global generator, so ``minidl.manual_seed`` (and a checkpoint's
    saved RNG state) makes it reproducible.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
