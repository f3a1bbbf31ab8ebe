"""Neural-network layers as ``Module`` objects, shaped like ``torch.nn``."""

from minidl.nn.activation import ReLU
from minidl.nn.container import Sequential
from minidl.nn.linear import Linear
from minidl.nn.module import Module, Parameter

__all__ = ["Linear", "Module", "Parameter", "ReLU", "Sequential"]
