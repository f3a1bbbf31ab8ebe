"""Optimizers, shaped like ``torch.optim``."""

from minidl.optim.optimizer import Optimizer
from minidl.optim.sgd import SGD

__all__ = ["SGD", "Optimizer"]
