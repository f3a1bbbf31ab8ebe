"""Data-parallel training of a small network on the embedded handwritten digits.

Run on 4 ranks:   mpiexec -n 4 python -m minidl.train
Run on 1 rank:    python -m minidl.train

Each rank trains a replica on its own shard of every global batch; gradients are averaged
with the project's hand-written allreduce (``--algorithm``) after each backward pass.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import collectives
import minidl
import minidl.functional as F
from minidl import nn, optim
from minidl.data import DataLoader, DistributedSampler, load_digits
from minidl.distributed import DistributedDataParallel, world


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m minidl.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=15, help="passes over the training set (default: 15)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="samples per rank per step; global batch = this x ranks (default: 32)",
    )
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default: 0.05)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units of the MLP (default: 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed for initialisation and shuffling (default: 0)")
    parser.add_argument(
        "--algorithm",
        default="ring",
        choices=sorted(collectives.ALGORITHMS),
        help="allreduce algorithm for the gradients (default: ring)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "hidden"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.lr <= 0:
        parser.error("--lr must be positive")
    return args


def evaluate(model: nn.Module, dataset) -> float:
    x, y = dataset[:]
    with minidl.no_grad():
        pred = model(minidl.Tensor(x)).data.argmax(axis=1)
    return float((pred == y).mean())


def main(argv: list[str] | None = None) -> dict[str, float]:
    start = time.perf_counter()
    args = parse_args(argv)
    comm = world()
    rank, size = comm.Get_rank(), comm.Get_size()
    say = print if rank == 0 else (lambda *a, **k: None)

    minidl.manual_seed(args.seed + rank)  # deliberately different; rank 0's weights are broadcast
    train_set, test_set = load_digits("train"), load_digits("test")
    model = nn.Sequential(nn.Linear(64, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 10))
    ddp = DistributedDataParallel(model, comm, algorithm=args.algorithm)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    sampler = DistributedSampler(len(train_set), num_replicas=size, rank=rank, shuffle=True, seed=args.seed)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler)

    say(
        f"minidl.train: {size} rank(s), {len(train_set)} train / {len(test_set)} test digits, "
        f"global batch {args.batch_size * size}, {len(loader)} steps/epoch, allreduce={args.algorithm}"
    )
    say(f"{'epoch':>5} {'loss':>8} {'train acc':>9} {'test acc':>8} {'samples/s':>10} {'allreduce s':>11}")
    totals = np.zeros(3)
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        epoch_start, comm_seconds = time.perf_counter(), 0.0
        stats = np.zeros(3)  # loss sum, correct, samples (this rank)
        for x, y in loader:
            logits = ddp(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()  # gradients are averaged across ranks during backward
            comm_seconds += ddp.stats.comm_seconds
            optimizer.step()
            stats += (loss.item() * len(y), (logits.data.argmax(1) == y.data).sum(), len(y))
        collectives.allreduce(stats, comm)
        elapsed = time.perf_counter() - epoch_start
        totals += (stats[2], elapsed, comm_seconds)
        test_acc = evaluate(model, test_set)
        if not args.quiet:
            say(
                f"{epoch:>5} {stats[0] / stats[2]:>8.4f} {stats[1] / stats[2]:>9.4f} {test_acc:>8.4f} "
                f"{stats[2] / elapsed:>10.0f} {comm_seconds:>11.3f}"
            )
    ddp.close()
    wall = time.perf_counter() - start
    summary = {
        "ranks": size,
        "test_accuracy": evaluate(model, test_set),
        "wall_seconds": wall,
        "train_seconds": totals[1],
        "allreduce_seconds": totals[2],
        "samples_per_second": totals[0] / totals[1],
    }
    say(
        f"done: test accuracy {summary['test_accuracy']:.4f} after {args.epochs} epochs on {size} rank(s); "
        f"{wall:.1f} s wall, {summary['samples_per_second']:.0f} samples/s, "
        f"allreduce {totals[2]:.2f} s ({100 * totals[2] / max(totals[1], 1e-12):.1f}% of training time)"
    )
    return summary


if __name__ == "__main__":
    main()
    sys.exit(0)
