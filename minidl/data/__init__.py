"""Datasets, samplers and the DataLoader."""

from minidl.data.dataset import Dataset, TensorDataset
from minidl.data.digits import load_digits
from minidl.data.loader import DataLoader
from minidl.data.sampler import DistributedSampler

__all__ = ["DataLoader", "Dataset", "DistributedSampler", "TensorDataset", "load_digits"]
