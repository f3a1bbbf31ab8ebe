"""2-D convolution layer (the arithmetic is ``minidl.functional.conv2d``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl import functional as F
from minidl.nn import init
from minidl.nn.module import Module, Parameter
from minidl.tensor import DEFAULT_DTYPE, Tensor
from minidl.window import conv_padding, pair


class Conv2d(Module):
    """Cross-correlation of (N, C_in, H, W) inputs with ``weight`` of shape (C_out, C_in/groups, kh, kw).

    Arguments, parameter names, shapes and default initialisation (Kaiming-uniform, a = sqrt(5))
    are PyTorch's. ``padding`` may be an int, a pair, ``"valid"`` (no padding) or ``"same"``
    (output as large as the input; stride 1 only). Only zero padding is supported.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        dtype: Any = DEFAULT_DTYPE,
    ) -> None:
        super().__init__()
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must both be "
                f"divisible by groups ({groups})"
            )
        if padding_mode != "zeros":
            raise NotImplementedError(f"Conv2d: padding_mode {padding_mode!r} is not supported (only 'zeros')")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2d", minimum=1)
        self.stride = pair(stride, "stride", "Conv2d", minimum=1)
        self.dilation = pair(dilation, "dilation", "Conv2d", minimum=1)
        self.groups = groups
        self.padding_mode = padding_mode
        self.padding = self._resolve_padding(padding)
        kh, kw = self.kernel_size
        self.weight = Parameter(np.zeros((out_channels, in_channels // groups, kh, kw), dtype=dtype))
        self.register_parameter("bias", Parameter(np.zeros(out_channels, dtype=dtype)) if bias else None)
        self.reset_parameters()

    def _resolve_padding(self, padding: Any) -> tuple[int, int]:
        top, bottom, left, right = conv_padding(padding, self.kernel_size, self.dilation, self.stride, "Conv2d")
        if top != bottom or left != right:
            # PyTorch pads asymmetrically here; the layer keeps one (height, width) padding pair
            raise ValueError(
                f"Conv2d: padding='same' with kernel {self.kernel_size} and dilation {self.dilation} "
                "needs uneven padding, which is not supported; use an odd kernel size"
            )
        return (top, left)

    def reset_parameters(self) -> None:
        init.default_weight_and_bias_(self.weight, self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d({self.in_channels}, {self.out_channels}): expected input of shape "
                f"(N, {self.in_channels}, H, W), got {x.shape}"
            )
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s
