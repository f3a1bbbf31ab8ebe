"""A small model zoo for the experiments: MLP, LeNet-5, CIFAR-style ResNets, a tiny transformer."""

from minidl.models.lenet import LeNet5
from minidl.models.mlp import MLP
from minidl.models.resnet import ResNetCIFAR, resnet8, resnet20
from minidl.models.transformer import TransformerClassifier

__all__ = ["MLP", "LeNet5", "ResNetCIFAR", "TransformerClassifier", "resnet8", "resnet20"]
