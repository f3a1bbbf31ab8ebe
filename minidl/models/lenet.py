"""LeNet-5 (LeCun et al. 1998), with modern ReLU and max pooling by default."""

from __future__ import annotations

from minidl import nn
from minidl.tensor import Tensor


class LeNet5(nn.Module):
    """Two 5x5 convolutions (6 and 16 channels) with 2x2 pooling, then 120-84-classes fully connected.

    The original network takes 32x32 inputs. For other sizes the convolutions are padded:

    - ``input_size >= 28``: conv1 gets ``(32 - input_size) // 2`` padding, so 28x28 MNIST is seen as
      32x32 (the usual MNIST setup) and the classifier takes 16 x 5 x 5 features;
    - smaller inputs (the embedded 8x8 digits): both convolutions use ``padding=2`` ("same"), so
      8x8 -> 6@8x8 -> pool 4x4 -> 16@4x4 -> pool 2x2, and the classifier takes 16 x 2 x 2
      features. The layer structure (C1, S2, C3, S4, F5, F6, output) is unchanged; upsampling
      8x8 digits to 32x32 instead would cost 7x the arithmetic for no gain in accuracy.

    ``activation="tanh"``, ``pool="avg"`` give the 1998 flavour.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 32,
        activation: str = "relu",
        pool: str = "max",
    ) -> None:
        super().__init__()
        if activation not in ("relu", "tanh"):
            raise ValueError(f"LeNet5: activation must be 'relu' or 'tanh', got {activation!r}")
        if pool not in ("max", "avg"):
            raise ValueError(f"LeNet5: pool must be 'max' or 'avg', got {pool!r}")
        if input_size < 4:
            raise ValueError(f"LeNet5: input_size must be >= 4, got {input_size}")
        if input_size >= 28:
            pad1, pad2 = max(0, (32 - input_size) // 2), 0
            side = ((input_size + 2 * pad1 - 4) // 2 - 4) // 2
        else:
            pad1 = pad2 = 2
            side = input_size // 4
        self.input_size = input_size
        act = nn.ReLU if activation == "relu" else nn.Tanh
        pool_layer = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad1),
            act(),
            pool_layer(2),
            nn.Conv2d(6, 16, 5, padding=pad2),
            act(),
            pool_layer(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),
            act(),
            nn.Linear(120, 84),
            act(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"LeNet5(input_size={self.input_size}): expected input (N, C, {self.input_size}, "
                f"{self.input_size}), got {x.shape}"
            )
        return self.classifier(self.features(x))
