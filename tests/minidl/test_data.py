"""Datasets, DataLoader, DistributedSampler, transforms, IDX readers and procedural data."""

import gzip
import struct

import numpy as np
import pytest

import minidl
from minidl.data import (
    DataFileError,
    DataLoader,
    Dataset,
    DistributedSampler,
    Subset,
    SyntheticImages,
    TensorDataset,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    make_blobs,
    make_sequences,
    make_spirals,
    random_split,
    read_idx,
)
from minidl.data import transforms as T


# ----------------------------------------------------------------------------- loader
def test_loader_batches_drop_last_and_tensor_output():
    ds = TensorDataset(np.arange(10, dtype=np.float32), np.arange(10))
    batches = list(DataLoader(ds, batch_size=4))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    assert all(isinstance(t, minidl.Tensor) for b in batches for t in b)
    assert len(DataLoader(ds, batch_size=4, drop_last=True)) == 2
    assert [len(b[0]) for b in DataLoader(ds, batch_size=4, drop_last=True)] == [4, 4]


def test_shuffle_is_seeded_and_changes_per_epoch():
    ds = TensorDataset(np.arange(20))

    def epoch_orders(loader, n):
        return [np.concatenate([b[0].data for b in loader]).tolist() for _ in range(n)]

    a = epoch_orders(DataLoader(ds, batch_size=6, shuffle=True, seed=3), 2)
    b = epoch_orders(DataLoader(ds, batch_size=6, shuffle=True, seed=3), 2)
    assert a == b and a[0] != a[1]
    assert sorted(a[0]) == list(range(20))
    loader = DataLoader(ds, batch_size=6, shuffle=True, seed=3)
    loader.set_epoch(1)  # resuming at epoch 1 reproduces that epoch's order
    assert epoch_orders(loader, 1)[0] == a[1]
    assert epoch_orders(DataLoader(ds, batch_size=6), 1)[0] == list(range(20))


class PerSample(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return np.full(2, i, dtype=np.float32), i


def test_per_sample_dataset_is_collated():
    x, y = next(iter(DataLoader(PerSample(), batch_size=3)))
    assert x.shape == (3, 2) and y.data.tolist() == [0, 1, 2]
    out = next(iter(DataLoader(PerSample(), batch_size=2, collate_fn=lambda s: len(s))))
    assert out == 2


def test_loader_validation():
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(PerSample(), batch_size=0)
    with pytest.raises(ValueError, match="shuffle to the sampler"):
        DataLoader(PerSample(), shuffle=True, sampler=DistributedSampler(5))
    with pytest.raises(ValueError, match="first dimension"):
        TensorDataset(np.zeros(3), np.zeros(4))


@pytest.mark.parametrize("n", [0, 1, 3, 10, 17])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_sampler_shards(n, replicas, drop_last):
    samplers = [DistributedSampler(n, replicas, r, shuffle=True, seed=5, drop_last=drop_last) for r in range(replicas)]
    for s in samplers:
        s.set_epoch(2)
    shards = [s.indices() for s in samplers]
    assert len({len(s) for s in shards}) == 1  # equal step counts on every rank
    assert all(len(sh) == len(s) for sh, s in zip(shards, samplers))
    flat = np.concatenate(shards)
    if drop_last:
        assert len(set(flat.tolist())) == len(flat) == (n // replicas) * replicas  # disjoint
    else:
        assert set(flat.tolist()) == set(range(n))  # covers the epoch
        assert len(flat) == -(-n // replicas) * replicas if n else len(flat) == 0
        # disjoint apart from the wrap-around padding
        assert len(flat) - len(set(flat.tolist())) == (len(flat) - n if n else 0)


def test_distributed_sampler_agrees_without_communication_and_reshuffles():
    a = DistributedSampler(100, 4, 1, seed=9)
    b = DistributedSampler(range(100), 4, 1, seed=9)  # a dataset works too (any len())
    np.testing.assert_array_equal(a.indices(), b.indices())
    first = a.indices().copy()
    a.set_epoch(1)
    assert not np.array_equal(first, a.indices())
    with pytest.raises(ValueError, match=r"rank 4 is not in \[0, 4\)"):
        DistributedSampler(10, 4, 4)


def test_subset_and_random_split():
    ds = TensorDataset(np.arange(10) * 10)
    parts = random_split(ds, [0.7, 0.3], seed=1)
    assert [len(p) for p in parts] == [7, 3]
    got = sorted(np.concatenate([p.get_batch(np.arange(len(p)))[0] for p in parts]).tolist())
    assert got == list(range(0, 100, 10))
    assert Subset(ds, [3, 1])[0][0] == 30
    with pytest.raises(ValueError, match="do not add up"):
        random_split(ds, [3, 3])


# ----------------------------------------------------------------------------- transforms
def test_normalize_per_channel():
    x = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 3.0)]).astype(np.float32)
    out = T.Normalize([1.0, 1.0], [1.0, 2.0])(x)
    np.testing.assert_allclose(out[0], 0.0)
    np.testing.assert_allclose(out[1], 1.0)
    with pytest.raises(ValueError, match="2 channel statistics"):
        T.Normalize([0, 0], [1, 1])(np.zeros((3, 2, 2)))


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 2, 5, 5)).astype(np.float32)
    out = T.RandomCrop(5, padding=2, generator=np.random.default_rng(1))(x)
    assert out.shape == x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for i in range(16):
        hits = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if np.array_equal(padded[i, :, dy : dy + 5, dx : dx + 5], out[i])
        ]
        assert hits, f"image {i} is not a crop"
        offsets.add(hits[0])
    assert len(offsets) > 3  # offsets differ between images
    assert T.RandomCrop(3)(x[0]).shape == (2, 3, 3)


def test_random_flip_flips_about_p_of_images():
    x = np.arange(2 * 1 * 1 * 3, dtype=np.float32).reshape(2, 1, 1, 3)
    x = np.repeat(x, 500, axis=0)
    out = T.RandomHorizontalFlip(0.5, generator=np.random.default_rng(0))(x)
    flipped = np.all(out == x[..., ::-1], axis=(1, 2, 3))
    kept = np.all(out == x, axis=(1, 2, 3))
    assert np.all(flipped | kept) and 400 < flipped.sum() < 600
    assert np.array_equal(T.RandomHorizontalFlip(1.0)(x[:1]), x[:1, ..., ::-1])


def test_transforms_follow_the_global_seed_and_apply_per_batch():
    x = np.random.default_rng(0).standard_normal((8, 1, 4, 4)).astype(np.float32)
    ds = TensorDataset(x, np.arange(8), transform=T.Compose([T.RandomCrop(4, padding=1), T.RandomHorizontalFlip()]))
    minidl.manual_seed(5)
    a = next(iter(DataLoader(ds, batch_size=8)))[0].data
    minidl.manual_seed(5)
    b = next(iter(DataLoader(ds, batch_size=8)))[0].data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, x)


# ----------------------------------------------------------------------------- IDX / MNIST
def idx_bytes(array, type_code=0x08):
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(">u1" if type_code == 0x08 else ">f4").tobytes()


def write_mnist(folder, n=6, gz=True, split="train"):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    stem = "train" if split == "train" else "t10k"
    for name, arr in ((f"{stem}-images-idx3-ubyte", images), (f"{stem}-labels-idx1-ubyte", labels)):
        data = idx_bytes(arr)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_gzip_or_raw(tmp_path, gz):
    images, labels = write_mnist(tmp_path, gz=gz)
    ds = load_mnist(tmp_path)
    x, y = ds[:]
    assert x.shape == (6, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0] * 255, images, atol=1e-4)
    np.testing.assert_array_equal(y, labels)
    assert load_mnist(tmp_path, flatten=True)[:][0].shape == (6, 784)


def test_fashion_mnist_in_torchvision_layout(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    write_mnist(raw, n=3, split="test")
    assert len(load_fashion_mnist(tmp_path, split="test")) == 3


def test_missing_file_says_where_and_what(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.*does not download"):
        load_mnist(tmp_path)


def corrupt(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_idx_errors_name_the_file_and_the_problem(tmp_path):
    good = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))
    p = corrupt(tmp_path, "trunc", good[:-10])
    with pytest.raises(
        DataFileError, match=r"trunc: truncated: dimensions \(4, 28, 28\) need 3136 bytes of data, the file has 3126"
    ):
        read_idx(p)
    p = corrupt(tmp_path, "magic", b"\x12\x34" + good[2:])
    with pytest.raises(DataFileError, match=r"magic: not an IDX file: magic number 0x12340803"):
        read_idx(p)
    p = corrupt(tmp_path, "extra", good + b"xx")
    with pytest.raises(DataFileError, match="extra: 2 unexpected bytes"):
        read_idx(p)
    p = corrupt(tmp_path, "short", b"\x00\x00")
    with pytest.raises(DataFileError, match="short: truncated"):
        read_idx(p)
    p = corrupt(tmp_path, "hdr", good[:8])
    with pytest.raises(DataFileError, match="hdr: truncated: the header needs 16 bytes"):
        read_idx(p)
    p = corrupt(tmp_path, "bad.gz", gzip.compress(good)[:-20])
    with pytest.raises(DataFileError, match=r"bad\.gz: corrupt or truncated gzip"):
        read_idx(p)
    p = corrupt(tmp_path, "float", idx_bytes(np.zeros((2, 2), dtype=np.float32), 0x0D))
    assert read_idx(p).dtype == np.float32
    with pytest.raises(DataFileError, match="float: magic number 0x00000d02 has data type 0x0d, expected 0x08"):
        read_idx(p, expected_type=0x08)


def test_mnist_mismatched_files(tmp_path):
    write_mnist(tmp_path, n=6)
    labels = idx_bytes(np.zeros(5, dtype=np.uint8))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    with pytest.raises(DataFileError, match=r"has 6 images but .* has 5 labels"):
        load_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.full(6, 12, np.uint8))))
    with pytest.raises(DataFileError, match="label 12 out of range"):
        load_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((6, 2), np.uint8))))
    with pytest.raises(DataFileError, match="says 2 dimension"):
        load_mnist(tmp_path)


# ----------------------------------------------------------------------------- procedural data
def test_digits_shapes():
    train, test = load_digits("train"), load_digits("test", flatten=False)
    assert len(train) + len(test) == 1797
    assert test[:][0].shape[1:] == (1, 8, 8)


def test_spirals_and_blobs():
    x, y = make_spirals(300, n_classes=3, seed=1)[:]
    assert x.shape == (300, 2) and set(y.tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(x, make_spirals(300, n_classes=3, seed=1)[:][0])
    x, y = make_blobs(200, n_features=5, n_classes=4, cluster_std=0.1)[:]
    assert x.shape == (200, 5)
    # tight blobs: every point is nearest to its own class mean
    means = np.stack([x[y == k].mean(0) for k in range(4)])
    assert np.all(np.argmin(((x[:, None] - means) ** 2).sum(-1), axis=1) == y)


def test_synthetic_images_any_size_deterministic_per_index():
    ds = SyntheticImages(10**9, n_classes=5, image_size=12, channels=2, seed=3)
    assert len(ds) == 10**9  # nothing is materialised
    x1, y1 = ds.get_batch(np.array([7, 123456789]))
    x2, y2 = SyntheticImages(10**9, n_classes=5, image_size=12, channels=2, seed=3)[123456789]
    np.testing.assert_array_equal(x1[1], x2)
    assert y1[1] == y2 and x1.shape == (2, 2, 12, 12)
    with pytest.raises(IndexError):
        ds.get_batch(np.array([10**9]))


def test_synthetic_images_have_class_structure():
    """Without noise, every image is a shifted, scaled copy of its class template."""
    ds = SyntheticImages(40, n_classes=4, image_size=8, channels=1, noise=0.0)
    x, y = ds[:]
    for img, label in zip(x, y):
        t = ds.templates[label][0]
        best = max(
            np.corrcoef(np.roll(t, (dy, dx), (0, 1)).ravel(), img[0].ravel())[0, 1]
            for dy in range(8)
            for dx in range(8)
        )
        assert best > 0.999


@pytest.mark.parametrize("task", ["majority", "after_marker"])
def test_sequences_labels_follow_the_rule(task):
    x, y = make_sequences(300, seq_len=10, vocab_size=12, n_classes=4, task=task, seed=2)[:]
    assert x.shape == (300, 10) and x.dtype == np.int64
    for tokens, label in zip(x, y):
        if task == "majority":
            counts = np.bincount(tokens, minlength=12)[:4]
            assert counts.argmax() == label and (counts == counts.max()).sum() == 1
        else:
            (pos,) = np.nonzero(tokens == 0)[0]
            assert (tokens[pos + 1] - 1) % 4 == label
    assert np.bincount(y, minlength=4).min() > 40  # roughly balanced


def test_set_epoch_start_batch_resumes_mid_epoch_without_fetching_skipped_batches():
    fetched = []

    class Recording(TensorDataset):
        def get_batch(self, indices):
            fetched.append(indices.tolist())
            return super().get_batch(indices)

    ds = Recording(np.arange(10))
    full = [b[0].data.tolist() for b in DataLoader(ds, batch_size=3, shuffle=True, seed=1)]
    loader = DataLoader(ds, batch_size=3, shuffle=True, seed=1)
    fetched.clear()
    loader.set_epoch(0, start_batch=2)
    assert [b[0].data.tolist() for b in loader] == full[2:]
    assert len(fetched) == 2
    with pytest.raises(ValueError, match="start_batch"):
        loader.set_epoch(0, start_batch=5)
