"""Neural-network layers as ``Module`` objects, shaped like ``torch.nn``."""

from minidl.nn import init, utils
from minidl.nn.activation import GELU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from minidl.nn.attention import MultiheadAttention
from minidl.nn.container import ModuleDict, ModuleList, Sequential
from minidl.nn.conv import Conv2d
from minidl.nn.dropout import Dropout
from minidl.nn.flatten import Flatten
from minidl.nn.linear import Identity, Linear
from minidl.nn.module import Module, Parameter
from minidl.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from minidl.nn.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from minidl.nn.residual import BasicBlock, Residual
from minidl.nn.sparse import Embedding
from minidl.nn.transformer import TransformerEncoder, TransformerEncoderLayer
from minidl.nn.upsampling import Upsample

__all__ = [
    "GELU",
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BasicBlock",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Embedding",
    "Flatten",
    "Identity",
    "LayerNorm",
    "Linear",
    "LogSoftmax",
    "MaxPool2d",
    "Module",
    "ModuleDict",
    "ModuleList",
    "MultiheadAttention",
    "Parameter",
    "ReLU",
    "Residual",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "Upsample",
    "init",
    "utils",
]
