"""``Upsample`` by an integer factor with nearest-neighbour repetition."""

from __future__ import annotations

from minidl.nn.module import Module
from minidl.ops import broadcast_to
from minidl.tensor import Tensor


class Upsample(Module):
    """Repeats each pixel of (N, C, H, W) ``scale_factor`` times in both directions.

    Composed from reshape and broadcast, so its gradient (a sum over each block) comes free.
    Used to feed the 8x8 digits to a LeNet-5 built for 32x32 inputs.
    """

    def __init__(self, scale_factor: int, mode: str = "nearest") -> None:
        super().__init__()
        if mode != "nearest":
            raise NotImplementedError(f"Upsample: only mode='nearest' is supported, got {mode!r}")
        if not isinstance(scale_factor, int) or scale_factor < 1:
            raise ValueError(f"Upsample: scale_factor must be a positive int, got {scale_factor!r}")
        self.scale_factor = scale_factor
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"Upsample: expected input of shape (N, C, H, W), got {x.shape}")
        n, c, h, w = x.shape
        s = self.scale_factor
        blocks = broadcast_to(x.reshape(n, c, h, 1, w, 1), (n, c, h, s, w, s))
        return blocks.reshape(n, c, h * s, w * s)

    def extra_repr(self) -> str:
        return f"scale_factor={self.scale_factor}, mode={self.mode!r}"
