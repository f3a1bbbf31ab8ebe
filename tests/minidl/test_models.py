"""The model zoo trains: LeNet-5 on the embedded digits, ResNet-8 on synthetic images, the
transformer on token sequences, the MLP on spirals. Sizes are kept small for the test budget;
examples/ has the longer runs."""

import time

import numpy as np
import pytest

import minidl
import minidl.functional as F
from minidl import nn, optim
from minidl.data import DataLoader, SyntheticImages, TensorDataset, load_digits, make_sequences, make_spirals
from minidl.models import MLP, LeNet5, ResNetCIFAR, TransformerClassifier, resnet8, resnet20
from minidl.optim.lr_scheduler import CosineAnnealingLR, warmup_cosine


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Training tests use one BLAS thread, as the trainer does (minidl.threads): on a shared
    2-core machine OpenBLAS's spinning worker threads can make small GEMMs 10x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def fit(model, loader, opt, sched, epochs):
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return loss.item()


def accuracy(model, x, y, batch=500):
    model.eval()
    with minidl.no_grad():
        pred = np.concatenate([model(minidl.tensor(x[i : i + batch])).data.argmax(1) for i in range(0, len(x), batch)])
    return float((pred == y).mean())


def test_lenet5_reaches_97_percent_on_embedded_digits():
    minidl.manual_seed(0)
    train, test = load_digits("train", flatten=False), load_digits("test", flatten=False)
    model = LeNet5(input_size=8)  # "same"-padded convolutions for 8x8 inputs (see LeNet5's docstring)
    loader = DataLoader(train, batch_size=32, shuffle=True, seed=0)
    opt = optim.Adam(model.parameters(), lr=0.01)
    epochs = 12
    start = time.perf_counter()
    fit(model, loader, opt, CosineAnnealingLR(opt, epochs * len(loader)), epochs)
    acc = accuracy(model, *test[:])
    print(f"LeNet-5 on digits: test accuracy {acc:.4f} after {epochs} epochs, {time.perf_counter() - start:.1f} s")
    assert acc >= 0.97


def test_resnet8_learns_synthetic_images():
    minidl.manual_seed(0)
    x, y = SyntheticImages(1300, n_classes=10, image_size=16, channels=3, noise=1.0, seed=0)[:]
    train = TensorDataset(x[:800], y[:800])
    model = resnet8(width=8)
    loader = DataLoader(train, batch_size=64, shuffle=True, seed=0)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    epochs = 3
    start = time.perf_counter()
    fit(model, loader, opt, warmup_cosine(opt, len(loader), epochs * len(loader)), epochs)
    acc = accuracy(model, x[800:], y[800:])
    print(f"ResNet-8 on synthetic images: test accuracy {acc:.4f} (chance 0.1), {time.perf_counter() - start:.1f} s")
    assert acc >= 0.7


def test_transformer_learns_majority_sequences():
    minidl.manual_seed(0)
    x, y = make_sequences(1500, seq_len=16, vocab_size=16, n_classes=4, task="majority", seed=0)[:]
    model = TransformerClassifier(16, 4, max_len=16, d_model=32, nhead=4, num_layers=2, dim_feedforward=64)
    loader = DataLoader(TensorDataset(x[:1000], y[:1000]), batch_size=64, shuffle=True, seed=0)
    opt = optim.AdamW(model.parameters(), lr=0.003, weight_decay=0.01)
    epochs = 2
    start = time.perf_counter()
    fit(model, loader, opt, warmup_cosine(opt, len(loader), epochs * len(loader)), epochs)
    acc = accuracy(model, x[1000:], y[1000:])
    print(
        f"transformer on majority sequences: test accuracy {acc:.4f} (chance 0.25), {time.perf_counter() - start:.1f} s"
    )
    assert acc >= 0.9


def test_mlp_separates_spirals():
    minidl.manual_seed(0)
    x, y = make_spirals(1200, n_classes=3, noise=0.05, turns=1.0, seed=0)[:]
    model = MLP(2, (64, 64), num_classes=3)
    loader = DataLoader(TensorDataset(x[:1000], y[:1000]), batch_size=50, shuffle=True, seed=0)
    opt = optim.Adam(model.parameters(), lr=0.01)
    fit(model, loader, opt, CosineAnnealingLR(opt, 30 * len(loader)), 30)
    assert accuracy(model, x[1000:], y[1000:]) >= 0.9


def test_resnet_depths_and_names():
    assert sum(p.size for p in resnet20().parameters()) == 272474  # He et al.: "0.27M"
    model = ResNetCIFAR(depth=14, num_classes=5, in_channels=1)
    assert len(model.layer1) == 2 and model.fc.out_features == 5
    names = list(model.state_dict())
    assert names[:3] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert "layer2.0.downsample.0.weight" in names and "layer1.0.downsample.0.weight" not in names
    assert model(minidl.randn(2, 1, 32, 32)).shape == (2, 5)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        ResNetCIFAR(depth=10)


def test_lenet_shapes_and_input_check():
    assert LeNet5()(minidl.randn(2, 1, 32, 32)).shape == (2, 10)
    assert LeNet5(input_size=28).features[0].padding == (2, 2)
    assert LeNet5(input_size=28)(minidl.randn(1, 1, 28, 28)).shape == (1, 10)
    assert LeNet5(num_classes=3, in_channels=3, activation="tanh", pool="avg", input_size=8)(
        minidl.randn(1, 3, 8, 8)
    ).shape == (1, 3)
    with pytest.raises(ValueError, match=r"expected input \(N, C, 8, 8\)"):
        LeNet5(input_size=8)(minidl.randn(1, 1, 32, 32))


def test_transformer_classifier_padding_and_cls():
    minidl.manual_seed(0)
    model = TransformerClassifier(10, 3, max_len=6, pool="cls").eval()
    ids = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9]])
    mask = np.array([[False, False, False, True, True, True], [False] * 6])
    full = model(ids, padding_mask=mask).data
    # the padded positions carry no information: changing them leaves the output alone
    ids2 = ids.copy()
    ids2[0, 3:] = [9, 9, 9]
    np.testing.assert_allclose(model(ids2, padding_mask=mask).data, full, rtol=1e-5, atol=1e-6)
    assert not np.allclose(model(ids2).data[0], model(ids).data[0])
    layers = list(model.encoder.layers)
    assert not np.array_equal(layers[0].linear1.weight.data, layers[1].linear1.weight.data)
    with pytest.raises(ValueError, match="L <= 6"):
        model(np.zeros((1, 7), dtype=np.int64))


def test_mlp_names_match_sequential():
    mlp = MLP(64, (128,), 10)
    seq = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    assert list(mlp.state_dict()) == ["layers." + k for k in seq.state_dict()]
