"""Optimizers and learning-rate schedules, shaped like ``torch.optim``."""

from minidl.optim import lr_scheduler
from minidl.optim.adam import Adam, AdamW
from minidl.optim.lamb import LAMB
from minidl.optim.lars import LARS
from minidl.optim.optimizer import Optimizer
from minidl.optim.sgd import SGD

__all__ = ["LAMB", "LARS", "SGD", "Adam", "AdamW", "Optimizer", "lr_scheduler"]
