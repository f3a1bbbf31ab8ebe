"""Differentiable operations: each a ``Function`` with forward and backward side by side.

The modules group ops by kind; this package re-exports the functional form of each one.
"""

from minidl.ops.elementwise import add, div, exp, log, mul, neg, pow, relu, sub
from minidl.ops.linalg import matmul
from minidl.ops.reduction import mean, sum
from minidl.ops.shape import broadcast_to, flatten, getitem, permute, reshape, transpose
from minidl.ops.softmax import log_softmax

__all__ = [
    "add",
    "broadcast_to",
    "div",
    "exp",
    "flatten",
    "getitem",
    "log",
    "log_softmax",
    "matmul",
    "mean",
    "mul",
    "neg",
    "permute",
    "pow",
    "relu",
    "reshape",
    "sub",
    "sum",
    "transpose",
]
