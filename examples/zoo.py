"""Longer single-process runs of the model zoo than the test suite can afford.

    python examples/zoo.py lenet                 # LeNet-5 on the embedded digits, 12 epochs
    python examples/zoo.py resnet --depth 20     # ResNet-20 on 32x32 synthetic images
    python examples/zoo.py transformer           # the order-dependent "after_marker" task

Each prints one line per epoch (loss, test accuracy, seconds) and a final summary. Set
MINIDL_THREADS=1 / OPENBLAS_NUM_THREADS=1 on a busy machine: idle BLAS threads spin.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import minidl
import minidl.functional as F
from minidl import optim
from minidl.data import DataLoader, SyntheticImages, TensorDataset, load_digits, make_sequences
from minidl.data import transforms as T
from minidl.models import LeNet5, ResNetCIFAR, TransformerClassifier
from minidl.optim.lr_scheduler import warmup_cosine


def accuracy(model, x, y, batch=500) -> float:
    model.eval()
    with minidl.no_grad():
        pred = np.concatenate([model(minidl.tensor(x[i : i + batch])).data.argmax(1) for i in range(0, len(x), batch)])
    model.train()
    return float((pred == y).mean())


def run(model, train, test, opt_fn, epochs, batch) -> float:
    loader = DataLoader(train, batch_size=batch, shuffle=True, seed=0)
    opt = opt_fn(model.parameters())
    sched = warmup_cosine(opt, max(1, len(loader) // 2), epochs * len(loader))
    start = time.perf_counter()
    print(f"{type(model).__name__}: {sum(p.size for p in model.parameters())} parameters, {len(train)} train samples")
    for epoch in range(1, epochs + 1):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = accuracy(model, *test)
        print(f"epoch {epoch:3d}  loss {loss.item():.4f}  test acc {acc:.4f}  {time.perf_counter() - start:7.1f} s")
    return acc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=["lenet", "resnet", "transformer"])
    p.add_argument("--epochs", type=int, help="default: 12 (lenet), 10 (resnet), 12 (transformer)")
    p.add_argument("--depth", type=int, default=8, help="ResNet depth 6n+2 (default: 8)")
    p.add_argument("--train-size", type=int, default=4000, help="procedural training samples (default: 4000)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    minidl.manual_seed(args.seed)
    if args.model == "lenet":
        train, test = load_digits("train", flatten=False), load_digits("test", flatten=False)
        acc = run(LeNet5(input_size=8), train, test[:], lambda ps: optim.Adam(ps, lr=0.01), args.epochs or 12, 32)
    elif args.model == "resnet":
        n = args.train_size
        x, y = SyntheticImages(n + 1000, image_size=32, noise=1.0, seed=args.seed)[:]
        augment = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])
        train = TensorDataset(x[:n], y[:n], transform=augment)
        model = ResNetCIFAR(args.depth)
        opt_fn = lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)  # noqa: E731
        acc = run(model, train, (x[n:], y[n:]), opt_fn, args.epochs or 10, 64)
    else:
        n = args.train_size
        x, y = make_sequences(n + 1000, seq_len=8, vocab_size=16, n_classes=4, task="after_marker", seed=args.seed)[:]
        model = TransformerClassifier(16, 4, max_len=8, d_model=32, nhead=4, num_layers=2, dim_feedforward=64)
        opt_fn = lambda ps: optim.AdamW(ps, lr=0.005, weight_decay=0.01)  # noqa: E731
        acc = run(model, TensorDataset(x[:n], y[:n]), (x[n:], y[n:]), opt_fn, args.epochs or 12, 32)
    print(f"done: {args.model} test accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
