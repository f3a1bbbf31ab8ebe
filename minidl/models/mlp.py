"""Multi-layer perceptron: the baseline model for flat features (digits, spirals, blobs)."""

from __future__ import annotations

from collections.abc import Sequence

from minidl import nn
from minidl.tensor import Tensor

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class MLP(nn.Module):
    """``Linear -> activation (-> Dropout)`` for each hidden size, then a Linear to ``num_classes``.

    Parameters are ``layers.<i>.weight``/``bias`` (a Sequential), so a 64-128-10 MLP has the same
    state_dict keys, under ``layers.``, as ``nn.Sequential(Linear(64, 128), ReLU(), Linear(128, 10))``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int] = (128,),
        num_classes: int = 10,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"MLP: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim > 2:
            x = x.flatten(1)
        return self.layers(x)
