"""minidl: a small deep-learning engine in numpy (and numba) with a PyTorch-shaped API."""

from minidl import functional, nn, optim
from minidl.autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from minidl.gradcheck import gradcheck
from minidl.random import manual_seed
from minidl.tensor import (
    Tensor,
    arange,
    full,
    ones,
    ones_like,
    rand,
    randn,
    tensor,
    zeros,
    zeros_like,
)

__version__ = "0.1.0"

__all__ = [
    "Tensor",
    "arange",
    "enable_grad",
    "full",
    "functional",
    "gradcheck",
    "is_grad_enabled",
    "manual_seed",
    "nn",
    "no_grad",
    "ones",
    "ones_like",
    "optim",
    "rand",
    "randn",
    "set_grad_enabled",
    "tensor",
    "zeros",
    "zeros_like",
]
