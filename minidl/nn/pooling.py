"""Pooling layers: max, average, and adaptive average (global average pooling)."""

from __future__ import annotations

from minidl import functional as F
from minidl.nn.module import Module
from minidl.tensor import Tensor
from minidl.window import pair


def _check_4d(name: str, x: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name}: expected input of shape (N, C, H, W), got {x.shape}")


class _Pool2d(Module):
    """Shared by the window poolings: ``stride`` defaults to ``kernel_size`` (PyTorch's rule)."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.kernel_size = pair(kernel_size, "kernel_size", name, minimum=1)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", name, minimum=1)
        self.padding = pair(padding, "padding", name, minimum=0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{name}: padding {self.padding} must be at most half of kernel_size {self.kernel_size}")

    def _pool(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        _check_4d(type(self).__name__, x)
        return self._pool(x)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Maximum over ``kernel_size`` windows; ``stride`` defaults to ``kernel_size``."""

    def _pool(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """Mean over ``kernel_size`` windows (zero padding counts in the mean, as PyTorch's default)."""

    def _pool(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class AdaptiveAvgPool2d(Module):
    """Average-pools (N, C, H, W) to (N, C, *output_size) whatever H and W are.

    Output size 1 (global average pooling, as in ResNet) and any size that divides the input
    evenly are composed from reshape and mean, so they need no extra op; other sizes use
    ``F.adaptive_avg_pool2d``.
    """

    def __init__(self, output_size: int | tuple[int, int]) -> None:
        super().__init__()
        self.output_size = pair(output_size, "output_size", "AdaptiveAvgPool2d", minimum=1)

    def forward(self, x: Tensor) -> Tensor:
        _check_4d("AdaptiveAvgPool2d", x)
        n, c, h, w = x.shape
        oh, ow = self.output_size
        if (oh, ow) == (1, 1):
            return x.mean(axis=(2, 3), keepdims=True)
        if h % oh == 0 and w % ow == 0:
            return x.reshape(n, c, oh, h // oh, ow, w // ow).mean(axis=(3, 5))
        if not hasattr(F, "adaptive_avg_pool2d"):
            raise NotImplementedError(
                f"AdaptiveAvgPool2d: output size {self.output_size} does not divide input {(h, w)}; "
                "that case needs minidl.functional.adaptive_avg_pool2d, which is not available"
            )
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
