"""ResNets for 32x32 images (He et al. 2016, section 4.2): depth 6n + 2 (ResNet-8, 20, 32, 44, 56, 110)."""

from __future__ import annotations

from minidl import functional as F
from minidl import nn
from minidl.nn.residual import BasicBlock
from minidl.tensor import Tensor


class ResNetCIFAR(nn.Module):
    """A 3x3 stem conv, three stages of n BasicBlocks (widths w, 2w, 4w; the last two stages halve
    the resolution), global average pooling and a linear classifier.

    Module names follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``).
    Shortcuts that change shape are 1x1 convolutions with batch norm (option B in the paper).
    Any input size works (global pooling); 32x32 is what the design assumes.
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"ResNetCIFAR: depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, ...), got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._stage(width, width, n, stride=1)
        self.layer2 = self._stage(width, 2 * width, n, stride=2)
        self.layer3 = self._stage(2 * width, 4 * width, n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")  # as torchvision

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def resnet8(num_classes: int = 10, in_channels: int = 3, width: int = 16) -> ResNetCIFAR:
    """ResNet-8: one BasicBlock per stage (78k parameters at width 16)."""
    return ResNetCIFAR(8, num_classes, in_channels, width)


def resnet20(num_classes: int = 10, in_channels: int = 3, width: int = 16) -> ResNetCIFAR:
    """ResNet-20: three BasicBlocks per stage (0.27M parameters at width 16)."""
    return ResNetCIFAR(20, num_classes, in_channels, width)
