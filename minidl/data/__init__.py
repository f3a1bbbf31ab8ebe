"""Datasets, samplers, the DataLoader and transforms."""

from minidl.data import transforms
from minidl.data.dataset import Dataset, Subset, TensorDataset, random_split
from minidl.data.digits import load_digits
from minidl.data.idx import DataFileError, load_fashion_mnist, load_mnist, read_idx
from minidl.data.loader import DataLoader, default_collate
from minidl.data.sampler import DistributedSampler
from minidl.data.synthetic import SyntheticImages, make_blobs, make_sequences, make_spirals

__all__ = [
    "DataFileError",
    "DataLoader",
    "Dataset",
    "DistributedSampler",
    "Subset",
    "SyntheticImages",
    "TensorDataset",
    "default_collate",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "make_blobs",
    "make_sequences",
    "make_spirals",
    "random_split",
    "read_idx",
    "transforms",
]
