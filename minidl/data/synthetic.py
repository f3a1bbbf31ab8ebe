"""Procedural datasets of any size, for scaling experiments where the real data is too small.

All are deterministic functions of their ``seed`` (and, for the lazily generated images, of the
sample index), the same on every machine and rank, and need no download:

- ``make_spirals``: interleaved 2-D spirals (a classic nonlinear toy problem for MLPs);
- ``make_blobs``: Gaussian clusters in any dimension;
- ``SyntheticImages``: images with class structure at any resolution and count (for CNNs);
- ``make_sequences``: token sequences whose label depends on content and order (for transformers).
"""

from __future__ import annotations

import numpy as np

from minidl.data.dataset import Dataset, TensorDataset


def _check_n(name: str, n_samples: int, n_classes: int) -> None:
    if n_samples < 0:
        raise ValueError(f"{name}: n_samples must be >= 0, got {n_samples}")
    if n_classes < 2:
        raise ValueError(f"{name}: n_classes must be >= 2, got {n_classes}")


def make_spirals(
    n_samples: int = 1000, n_classes: int = 2, noise: float = 0.1, turns: float = 1.0, seed: int = 0
) -> TensorDataset:
    """``n_classes`` spiral arms in the plane; points (N, 2) float32 roughly in [-1, 1], labels (N,)."""
    _check_n("make_spirals", n_samples, n_classes)
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % n_classes
    r = rng.uniform(0.05, 1.0, n_samples)
    theta = 2 * np.pi * (turns * r + y / n_classes)
    x = (
        np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
        + noise * rng.standard_normal((n_samples, 2)) * r[:, None]
    )
    return TensorDataset(x.astype(np.float32), y.astype(np.int64))


def make_blobs(
    n_samples: int = 1000,
    n_features: int = 2,
    n_classes: int = 3,
    cluster_std: float = 1.0,
    center_box: tuple[float, float] = (-10.0, 10.0),
    seed: int = 0,
) -> TensorDataset:
    """Isotropic Gaussian clusters, one per class, with centres uniform in ``center_box``."""
    _check_n("make_blobs", n_samples, n_classes)
    if n_features < 1:
        raise ValueError(f"make_blobs: n_features must be >= 1, got {n_features}")
    rng = np.random.default_rng(seed)
    centers = rng.uniform(center_box[0], center_box[1], (n_classes, n_features))
    y = np.arange(n_samples) % n_classes
    x = centers[y] + cluster_std * rng.standard_normal((n_samples, n_features))
    return TensorDataset(x.astype(np.float32), y.astype(np.int64))


class SyntheticImages(Dataset):
    """Images (C, S, S) whose class is a texture: a class-specific sum of oriented periodic gratings.

    Each class has a template (``components`` gratings with class-specific integer frequencies,
    orientations and colours, scaled to unit variance). Sample ``i`` is its class template,
    circularly shifted by a random offset, times a random contrast in [0.7, 1.3], plus Gaussian
    ``noise``. The random shift makes the classes hard for a linear model on raw pixels and easy
    for a convolutional network (translation-invariant features). Samples are generated on
    demand from ``(seed, i)``, so any ``n_samples`` costs no memory and every rank sees the
    same sample ``i``.
    """

    def __init__(
        self,
        n_samples: int,
        n_classes: int = 10,
        image_size: int = 32,
        channels: int = 3,
        noise: float = 0.5,
        components: int = 3,
        seed: int = 0,
    ) -> None:
        _check_n("SyntheticImages", n_samples, n_classes)
        if image_size < 4 or channels < 1 or components < 1:
            raise ValueError(
                f"SyntheticImages: need image_size >= 4, channels >= 1, components >= 1, got "
                f"{image_size}, {channels}, {components}"
            )
        self.n_samples = int(n_samples)
        self.n_classes = n_classes
        self.image_size = image_size
        self.channels = channels
        self.noise = noise
        self.seed = seed
        self.templates = self._templates(components)

    def _templates(self, components: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, 0))
        s, c = self.image_size, self.channels
        yy, xx = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
        max_freq = max(1, min(4, s // 4))
        out = np.zeros((self.n_classes, c, s, s))
        for k in range(self.n_classes):
            for _ in range(components):
                fy, fx = rng.integers(-max_freq, max_freq + 1, 2)
                if fy == 0 and fx == 0:
                    fx = 1
                phase = rng.uniform(0, 2 * np.pi)
                colour = rng.uniform(-1, 1, c)
                wave = np.cos(2 * np.pi * (fy * yy + fx * xx) / s + phase)
                out[k] += colour[:, None, None] * wave
            out[k] /= out[k].std() + 1e-12
        return out.astype(np.float32)

    def __len__(self) -> int:
        return self.n_samples

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.n_samples):
            raise IndexError(f"SyntheticImages: index out of range for {self.n_samples} samples")
        s, c = self.image_size, self.channels
        images = np.empty((len(indices), c, s, s), dtype=np.float32)
        labels = np.empty(len(indices), dtype=np.int64)
        for j, i in enumerate(indices):
            rng = np.random.default_rng((self.seed, 1, int(i)))
            label = int(rng.integers(self.n_classes))
            dy, dx = rng.integers(0, s, 2)
            contrast = rng.uniform(0.7, 1.3)
            img = np.roll(self.templates[label], (int(dy), int(dx)), axis=(1, 2)) * contrast
            images[j] = img + self.noise * rng.standard_normal((c, s, s), dtype=np.float32)
            labels[j] = label
        return images, labels

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(index, slice):
            return self.get_batch(np.arange(self.n_samples)[index])
        if not isinstance(index, (int, np.integer)):
            return self.get_batch(np.asarray(index))
        if index < 0:
            index += self.n_samples
        x, y = self.get_batch(np.array([index]))
        return x[0], y[0]

    def materialize(self) -> TensorDataset:
        """All samples as an in-memory TensorDataset (for small sizes)."""
        return TensorDataset(*self.get_batch(np.arange(self.n_samples)))

    def __repr__(self) -> str:
        return (
            f"SyntheticImages({self.n_samples} samples, {self.n_classes} classes, "
            f"{self.channels}x{self.image_size}x{self.image_size}, noise={self.noise})"
        )


SEQUENCE_TASKS = ("majority", "after_marker")


def make_sequences(
    n_samples: int = 2000,
    seq_len: int = 16,
    vocab_size: int = 16,
    n_classes: int = 4,
    task: str = "majority",
    seed: int = 0,
) -> TensorDataset:
    """Token sequences (N, seq_len) int64 with labels (N,), for sequence classifiers.

    - ``task="majority"``: label = the class token (ids ``0..n_classes-1``) that occurs most often;
      the others are distractors (ids ``n_classes..vocab_size-1``) or fewer class tokens. Needs
      counting over the whole sequence.
    - ``task="after_marker"``: token 0 is a marker that occurs once; label = (the token right after
      it - 1) mod n_classes. Needs attention to a position found by content.
    """
    _check_n("make_sequences", n_samples, n_classes)
    if task not in SEQUENCE_TASKS:
        raise ValueError(f"make_sequences: task must be one of {SEQUENCE_TASKS}, got {task!r}")
    rng = np.random.default_rng(seed)
    if task == "majority":
        if vocab_size < n_classes or seq_len < 3:
            raise ValueError("make_sequences(majority): need vocab_size >= n_classes and seq_len >= 3")
        tokens = np.empty((0, seq_len), dtype=np.int64)
        y = np.empty(0, dtype=np.int64)
        while len(y) < n_samples:  # rejection: keep sequences with a unique most frequent class token
            cand = rng.integers(0, vocab_size, (2 * (n_samples - len(y)) + 16, seq_len))
            counts = (cand[:, :, None] == np.arange(n_classes)).sum(1)
            top = counts.max(1)
            unique = (counts == top[:, None]).sum(1) == 1
            tokens = np.concatenate([tokens, cand[unique]])
            y = np.concatenate([y, counts[unique].argmax(1)])
        tokens, y = tokens[:n_samples], y[:n_samples]
    else:
        if vocab_size < n_classes + 1 or seq_len < 2:
            raise ValueError("make_sequences(after_marker): need vocab_size > n_classes and seq_len >= 2")
        tokens = rng.integers(1, vocab_size, (n_samples, seq_len))
        pos = rng.integers(0, seq_len - 1, n_samples)
        y = rng.integers(0, n_classes, n_samples)
        # the token after the marker: any id t >= 1 with (t - 1) mod n_classes == label, uniformly
        choices = (vocab_size - 2 - y) // n_classes + 1
        k = (rng.random(n_samples) * choices).astype(np.int64)
        rows = np.arange(n_samples)
        tokens[rows, pos] = 0
        tokens[rows, pos + 1] = 1 + y + n_classes * k
    return TensorDataset(tokens.astype(np.int64), y.astype(np.int64))
