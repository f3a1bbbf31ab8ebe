"""Residual blocks (He et al. 2016): ``out = f(x) + shortcut(x)``."""

from __future__ import annotations

from minidl import functional as F
from minidl.nn.container import Sequential
from minidl.nn.conv import Conv2d
from minidl.nn.module import Module
from minidl.nn.normalization import BatchNorm2d
from minidl.tensor import Tensor


class Residual(Module):
    """Wraps any module ``body`` as ``body(x) + shortcut(x)`` (shortcut defaults to the identity)."""

    def __init__(self, body: Module, shortcut: Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class BasicBlock(Module):
    """Two 3x3 conv-BN layers with a shortcut; named like torchvision's (``conv1``, ``bn1``, ``downsample``).

    When the block changes resolution (``stride`` > 1) or width, the shortcut is a 1x1
    convolution with batch norm (He et al.'s option B); otherwise it is the identity.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(planes)
        self.conv2 = Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.downsample = Sequential(Conv2d(in_planes, planes, 1, stride=stride, bias=False), BatchNorm2d(planes))
        else:
            self.downsample = None

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)
