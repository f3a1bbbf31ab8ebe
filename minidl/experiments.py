"""The models and datasets the trainer can combine, by name.

Every dataset comes back as (train, test, info) where ``info`` says what a model needs to know
(input shape, number of classes, vocabulary); every model is built from that ``info``, so any
model name can be paired with any dataset it makes sense for, and a mismatch is a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from minidl import models
from minidl.data import (
    SyntheticImages,
    TensorDataset,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    make_blobs,
    make_sequences,
    make_spirals,
)
from minidl.nn import Module

DATASETS = ("digits", "mnist", "fashion-mnist", "synthetic-images", "spirals", "blobs", "sequences")
MODELS = ("mlp", "lenet", "resnet", "transformer")
PROCEDURAL = ("synthetic-images", "spirals", "blobs", "sequences")  # generated, of any size
DEFAULT_TRAIN_SIZE = 4000
# What each dataset's samples are, and what each model takes.
INPUTS = {
    "digits": "images",
    "mnist": "images",
    "fashion-mnist": "images",
    "synthetic-images": "images",
    "spirals": "feature vectors",
    "blobs": "feature vectors",
    "sequences": "token sequences",
}
ACCEPTS = {
    "mlp": ("images", "feature vectors"),
    "lenet": ("images",),
    "resnet": ("images",),
    "transformer": ("token sequences",),
}
DEFAULT_MODEL = {
    "digits": "mlp",
    "mnist": "lenet",
    "fashion-mnist": "lenet",
    "synthetic-images": "resnet",
    "spirals": "mlp",
    "blobs": "mlp",
    "sequences": "transformer",
}


@dataclass(frozen=True)
class DataInfo:
    """What a model must know about its inputs."""

    input_shape: tuple[int, ...]  # one sample, e.g. (1, 8, 8) or (2,) or (16,) for token ids
    num_classes: int
    tokens: bool = False  # inputs are integer token ids
    vocab_size: int = 0


def load_dataset(
    name: str, data_dir: str | None = None, train_size: int | None = None, seed: int = 0
) -> tuple[Any, Any, DataInfo]:
    """(train, test, info) for a dataset name in :data:`DATASETS`.

    ``train_size`` sets the number of training samples of the procedural datasets (the test
    split is a fifth of it); ``data_dir`` is where MNIST-format IDX files live.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if name == "digits":
        train, test = load_digits("train", flatten=False), load_digits("test", flatten=False)
        return train, test, DataInfo((1, 8, 8), 10)
    if name in ("mnist", "fashion-mnist"):
        if data_dir is None:
            raise ValueError(f"--dataset {name} reads IDX files: pass --data-dir DIR (they are not downloaded)")
        load = load_mnist if name == "mnist" else load_fashion_mnist
        return load(data_dir, "train"), load(data_dir, "test"), DataInfo((1, 28, 28), 10)
    n = train_size or DEFAULT_TRAIN_SIZE
    n_test = max(n // 5, 10)
    if name == "synthetic-images":
        full = SyntheticImages(n + n_test, n_classes=10, image_size=32, channels=3, seed=seed)
        x, y = full[np.arange(n + n_test)]
        return TensorDataset(x[:n], y[:n]), TensorDataset(x[n:], y[n:]), DataInfo((3, 32, 32), 10)
    if name == "sequences":
        full = make_sequences(n + n_test, seq_len=16, vocab_size=16, n_classes=4, seed=seed)
        x, y = full[np.arange(n + n_test)]
        info = DataInfo((16,), 4, tokens=True, vocab_size=16)
        return TensorDataset(x[:n], y[:n]), TensorDataset(x[n:], y[n:]), info
    maker = make_spirals if name == "spirals" else make_blobs
    full = maker(n + n_test, seed=seed)
    x, y = full[np.arange(n + n_test)]
    classes = int(y.max()) + 1
    return TensorDataset(x[:n], y[:n]), TensorDataset(x[n:], y[n:]), DataInfo(tuple(x.shape[1:]), classes)


def fit_problem(model: str, inputs: str) -> str | None:
    """Why ``model`` cannot take ``inputs`` (a dataset name or one of :data:`INPUTS`' values), or None."""
    kind = INPUTS.get(inputs, inputs)
    if kind in ACCEPTS[model]:
        return None
    takes = " or ".join(ACCEPTS[model])
    return f"--model {model} does not fit this dataset, whose inputs are {kind} ({model} takes {takes})"


def build_model(name: str, info: DataInfo, hidden: tuple[int, ...] = (128,), depth: int = 8) -> Module:
    """A model from :data:`MODELS` sized for ``info``'s inputs and classes.

    ``hidden`` sets the MLP's hidden layer widths; ``depth`` the ResNet's (8, 14, 20, ...: 6n+2).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    kind = "token sequences" if info.tokens else "images" if len(info.input_shape) == 3 else "feature vectors"
    if why := fit_problem(name, kind):
        raise ValueError(why)
    if name == "mlp":
        return models.MLP(int(np.prod(info.input_shape)), tuple(hidden), info.num_classes)
    if name == "transformer":
        return models.TransformerClassifier(info.vocab_size, info.num_classes, max_len=info.input_shape[0])
    channels, size = info.input_shape[0], info.input_shape[1]
    if name == "lenet":
        return models.LeNet5(info.num_classes, in_channels=channels, input_size=size)
    return models.ResNetCIFAR(depth=depth, num_classes=info.num_classes, in_channels=channels)
