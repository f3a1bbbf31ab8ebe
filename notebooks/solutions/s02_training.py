"""Reference solutions of notebook 02 (training)."""

from __future__ import annotations

import minidl
from minidl.data import DataLoader


def sgd_momentum_step(param, grad, velocity, lr, momentum, weight_decay):
    """PyTorch's SGD update, in numpy."""
    g = grad + weight_decay * param
    velocity = momentum * velocity + g
    return param - lr * velocity, velocity


def accuracy(model, dataset, batch_size: int = 256) -> float:
    """Fraction of samples whose largest logit is the label: eval mode, no graph, every sample counted."""
    model.eval()
    correct = 0
    with minidl.no_grad():
        for x, y in DataLoader(dataset, batch_size=batch_size):
            correct += int((model(x).data.argmax(axis=1) == y.data).sum())
    return correct / len(dataset)
