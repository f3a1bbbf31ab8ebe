"""Batch-vectorised transforms: normalisation and simple augmentation for (..., C, H, W) images.

Each transform maps an array to an array and accepts a single image (C, H, W) or a batch
(N, C, H, W); random transforms draw independently for every image of a batch. Randomness comes
from ``generator`` if given, else from minidl's global generator at call time, so
``minidl.manual_seed`` and a checkpoint's saved RNG state make augmentation reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from minidl.random import generator as global_generator


def _as_batch(x: np.ndarray, name: str) -> tuple[np.ndarray, bool]:
    if x.ndim == 3:
        return x[None], True
    if x.ndim == 4:
        return x, False
    raise ValueError(f"{name}: expected an image (C, H, W) or a batch (N, C, H, W), got shape {x.shape}")


class Compose:
    """Applies transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[np.ndarray], np.ndarray]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class Normalize:
    """``(x - mean) / std`` per channel (dimension -3); scalars apply to every element."""

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        if self.mean.ndim > 1 or self.std.ndim > 1:
            raise ValueError("Normalize: mean and std must be scalars or one value per channel")
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {self.std.tolist()}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        mean, std = self.mean, self.std
        if mean.ndim or std.ndim:
            channels = max(mean.size, std.size)
            if x.ndim < 3 or x.shape[-3] != channels:
                raise ValueError(f"Normalize: {channels} channel statistics for input of shape {x.shape}")
            mean, std = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)
        return ((x - mean) / std).astype(np.result_type(x.dtype, np.float32), copy=False)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class RandomCrop:
    """Pads by ``padding`` (zeros or ``fill``) then crops ``size`` at a random offset per image.

    The standard CIFAR augmentation is ``RandomCrop(32, padding=4)``.
    """

    def __init__(self, size: int | tuple[int, int], padding: int = 0, fill: float = 0.0, generator: Any = None) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if padding < 0 or min(self.size) < 1:
            raise ValueError(f"RandomCrop: need size >= 1 and padding >= 0, got {self.size}, {padding}")
        self.padding = padding
        self.fill = fill
        self.generator = generator

    def __call__(self, x: np.ndarray) -> np.ndarray:
        batch, single = _as_batch(np.asarray(x), "RandomCrop")
        p = self.padding
        if p:
            batch = np.pad(batch, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=self.fill)
        n, c, h, w = batch.shape
        th, tw = self.size
        if th > h or tw > w:
            raise ValueError(f"RandomCrop: crop {self.size} larger than padded image {(h, w)}")
        rng = self.generator or global_generator()
        top = rng.integers(0, h - th + 1, n)
        left = rng.integers(0, w - tw + 1, n)
        rows = top[:, None] + np.arange(th)  # (N, th)
        cols = left[:, None] + np.arange(tw)  # (N, tw)
        n_idx = np.arange(n)[:, None, None, None]
        c_idx = np.arange(c)[None, :, None, None]
        out = batch[n_idx, c_idx, rows[:, None, :, None], cols[:, None, None, :]]
        return out[0] if single else out

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirrors each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5, generator: Any = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = p
        self.generator = generator

    def __call__(self, x: np.ndarray) -> np.ndarray:
        batch, single = _as_batch(np.asarray(x), "RandomHorizontalFlip")
        rng = self.generator or global_generator()
        flip = rng.random(len(batch)) < self.p
        out = batch.copy()
        out[flip] = batch[flip][..., ::-1]
        return out[0] if single else out

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Lambda:
    """Wraps a function as a transform."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.fn = fn

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.fn(x)
