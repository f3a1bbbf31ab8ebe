"""Data-parallel training with every cost visible: compute, communication, overlap, convergence.

Run on 4 ranks:   mpiexec -n 4 python -m minidl.train
Run on 1 rank:    python -m minidl.train

Each rank trains a replica on its own shard of every global batch; DistributedDataParallel
averages the gradients with the project's hand-written allreduce (--algorithm), in buckets,
overlapped with backward. The global batch is batch-size x ranks x accumulation.

Examples:
  mpiexec -n 4 python -m minidl.train --model lenet --epochs 10
  mpiexec -n 2 python -m minidl.train --link 10Gbps,50us --profile step.png
  mpiexec -n 4 python -m minidl.train --dataset synthetic-images --model resnet --optimizer lars \\
      --lr 0.1 --base-batch 128 --warmup-epochs 2 --schedule cosine --metrics runs/r.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import minidl
import minidl.functional as F
from minidl import distributed as dist
from minidl import optim
from minidl.checkpoint import load_checkpoint, save_checkpoint
from minidl.data import DataLoader, DistributedSampler
from minidl.distributed import DistributedDataParallel, GradientNoiseScale
from minidl.distributed.timing import StepTimer, StepTiming, summarize
from minidl.experiments import DATASETS, DEFAULT_MODEL, MODELS, build_model, load_dataset
from minidl.metrics import MetricsWriter
from minidl.optim import lr_scheduler
from minidl.threads import configure_threads

OPTIMIZERS = ("sgd", "lars", "lamb", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m minidl.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    g = p.add_argument_group("model and data")
    g.add_argument("--dataset", default="digits", choices=DATASETS, help="training data (default: digits, embedded)")
    g.add_argument(
        "--model",
        choices=MODELS,
        help="network (default: mlp for digits/spirals/blobs, lenet for "
        "mnist, resnet for synthetic-images, transformer for sequences)",
    )
    g.add_argument("--data-dir", help="directory with MNIST-format IDX files (for --dataset mnist/fashion-mnist)")
    g.add_argument("--train-size", type=int, help="training samples of a procedural dataset (default: 4000)")
    g.add_argument("--hidden", default="128", help="MLP hidden widths, comma-separated (default: 128)")
    g.add_argument("--depth", type=int, default=8, help="ResNet depth, 6n+2 (default: 8)")

    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=15, help="passes over the training set (default: 15)")
    g.add_argument("--batch-size", type=int, default=32, help="samples per rank per micro-step (default: 32)")
    g.add_argument("--accumulation", type=int, default=1, help="micro-steps per optimizer step (default: 1)")
    g.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS, help="(default: sgd)")
    g.add_argument(
        "--lr",
        type=float,
        default=0.05,
        help="learning rate; with --base-batch, the rate tuned for "
        "that batch, scaled linearly to the global batch (default: 0.05)",
    )
    g.add_argument("--base-batch", type=int, help="apply the linear scaling rule: lr x global batch / base batch")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD/LARS momentum (default: 0.9)")
    g.add_argument("--weight-decay", type=float, default=0.0, help="(default: 0)")
    g.add_argument(
        "--schedule", default="constant", choices=SCHEDULES, help="LR schedule after warmup (default: constant)"
    )
    g.add_argument(
        "--warmup-epochs", type=float, default=0.0, help="linear warmup from lr/10 (Goyal et al.; default: 0)"
    )
    g.add_argument("--clip-grad-norm", type=float, help="clip the global gradient norm to this value")
    g.add_argument("--seed", type=int, default=0, help="seed for initialisation and shuffling (default: 0)")
    g.add_argument("--threads", type=int, help="BLAS/numba threads per rank (default: cores / ranks on the node)")

    g = p.add_argument_group("communication")
    g.add_argument(
        "--algorithm",
        default="ring",
        metavar="NAME",
        help=f"allreduce algorithm for the gradients: {', '.join(dist.algorithms())} (default: ring)",
    )
    g.add_argument("--bucket-mb", type=float, default=25.0, help="gradient bucket size in MiB (default: 25)")
    g.add_argument("--no-overlap", action="store_true", help="allreduce after backward instead of during it")
    g.add_argument("--link", help="emulate a slower link: BANDWIDTH,LATENCY such as '10Gbps,20us', or a preset name")

    g = p.add_argument_group("output")
    g.add_argument("--metrics", help="write per-step metrics to this .jsonl or .csv file (rank 0)")
    g.add_argument("--profile", help="save a per-rank timeline of one step to this .png/.svg")
    g.add_argument("--profile-step", type=int, default=5, help="which step to profile (default: 5)")
    g.add_argument("--baseline-throughput", type=float, help="samples/s of a 1-rank run, for scaling efficiency")
    g.add_argument("--checkpoint-dir", help="save checkpoints here (rank 0), as last.npz")
    g.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints (default: 1)")
    g.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir/last.npz")
    g.add_argument("--quiet", action="store_true", help="print only the final summary")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    for name in ("epochs", "batch_size", "accumulation", "checkpoint_every", "depth", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.lr <= 0 or args.bucket_mb <= 0:
        p.error("--lr and --bucket-mb must be positive")
    if args.resume and not args.checkpoint_dir:
        p.error("--resume needs --checkpoint-dir")
    try:
        args.hidden = tuple(int(h) for h in args.hidden.split(","))
    except ValueError:
        p.error(f"--hidden must be comma-separated integers, got {args.hidden!r}")
    try:
        dist.check_algorithm(args.algorithm)
        args.link = dist.resolve_link(args.link)
    except ValueError as e:
        p.error(str(e))
    args.model = args.model or DEFAULT_MODEL[args.dataset]
    return args


def make_optimizer(name: str, params: Any, lr: float, momentum: float, weight_decay: float) -> optim.Optimizer:
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "lars":
        return optim.LARS(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "lamb":
        return optim.LAMB(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def make_schedule(args: argparse.Namespace, opt: optim.Optimizer, steps_per_epoch: int) -> Any:
    """A per-step schedule: optional linear warmup from lr/10, then constant, cosine or step decay."""
    total = args.epochs * steps_per_epoch
    warm = min(int(round(args.warmup_epochs * steps_per_epoch)), total - 1)
    after = total - warm
    if args.schedule == "cosine":
        main = lr_scheduler.CosineAnnealingLR(opt, after)
    elif args.schedule == "step":
        main = lr_scheduler.StepLR(opt, step_size=max(after // 3, 1), gamma=0.1)
    else:
        main = lr_scheduler.LambdaLR(opt, lambda t: 1.0)
    if warm <= 0:
        return main
    return lr_scheduler.SequentialLR(opt, [lr_scheduler.LinearWarmup(opt, warm, 0.1), main], milestones=[warm])


def evaluate(model: Any, dataset: Any, comm: Any, batch: int = 512) -> float:
    """Accuracy on ``dataset``, each rank scoring its own slice; exact (no padding)."""
    rank, size = comm.Get_rank(), comm.Get_size()
    indices = np.array_split(np.arange(len(dataset)), size)[rank]
    counts = np.zeros(2)
    was_training = model.training
    model.eval()
    with minidl.no_grad():
        for start in range(0, len(indices), batch):
            x, y = dataset[indices[start : start + batch]]
            pred = model(minidl.Tensor(x)).data.argmax(axis=1)
            counts += ((pred == y).sum(), len(y))
    model.train(was_training)
    dist.all_reduce(counts, comm=comm)
    return float(counts[0] / counts[1]) if counts[1] else float("nan")


class Printer:
    """Prints on rank 0 only, without breaking a progress bar."""

    def __init__(self, rank: int, quiet: bool) -> None:
        self.on = rank == 0
        self.quiet = quiet

    def __call__(self, text: str, always: bool = False) -> None:
        if self.on and (always or not self.quiet):
            try:
                from tqdm import tqdm

                tqdm.write(text)
            except ImportError:
                print(text, flush=True)


def progress(iterable: Any, enabled: bool, desc: str, total: int) -> Any:
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    launch = time.perf_counter()
    args = parse_args(argv)
    comm = dist.world()
    rank, size = comm.Get_rank(), comm.Get_size()
    say = Printer(rank, args.quiet)
    threads = configure_threads(args.threads, comm)

    minidl.manual_seed(args.seed + rank)  # deliberately different; DDP broadcasts rank 0's weights
    train_set, test_set, info = load_dataset(args.dataset, args.data_dir, args.train_size, args.seed)
    model = build_model(args.model, info, args.hidden, args.depth)
    ddp = DistributedDataParallel(
        model,
        comm,
        algorithm=args.algorithm,
        bucket_cap_mb=args.bucket_mb,
        overlap=not args.no_overlap,
        measure_noise_scale=size > 1,
        link=args.link,
    )
    global_batch = args.batch_size * size * args.accumulation
    lr = args.lr * global_batch / args.base_batch if args.base_batch else args.lr
    opt = make_optimizer(args.optimizer, model.parameters(), lr, args.momentum, args.weight_decay)
    sampler = DistributedSampler(len(train_set), num_replicas=size, rank=rank, shuffle=True, seed=args.seed)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    steps_per_epoch = len(loader) // args.accumulation
    if steps_per_epoch < 1:
        raise SystemExit(
            f"minidl.train: {len(train_set)} training samples give no full step of "
            f"{args.batch_size} x {size} ranks x {args.accumulation}; lower --batch-size or --accumulation"
        )
    schedule = make_schedule(args, opt, steps_per_epoch)
    noise = GradientNoiseScale(args.batch_size * args.accumulation, global_batch) if size > 1 else None

    start_epoch, step = 1, 0
    ckpt = Path(args.checkpoint_dir) / "last.npz" if args.checkpoint_dir else None
    if args.resume:
        if not ckpt.exists():
            raise SystemExit(f"minidl.train: --resume, but {ckpt} does not exist")
        tree = load_checkpoint(ckpt, model, opt, schedule, restore_rng=False)
        start_epoch, step = int(tree["epoch"]) + 1, int(tree["step"])
        say(f"resumed from {ckpt} after epoch {tree['epoch']} (step {step})")

    say(
        f"minidl.train: {args.model} on {args.dataset} ({len(train_set)} train / {len(test_set)} test), "
        f"{size} rank(s), global batch {global_batch} = {args.batch_size} x {size} ranks x {args.accumulation}, "
        f"lr {lr:g} ({args.optimizer}, {args.schedule}), allreduce={args.algorithm}, "
        f"overlap={'off' if args.no_overlap else 'on'}, {threads} thread(s)/rank"
        + (f", link {args.link}" if args.link else "")
    )
    say(
        f"{'epoch':>5} {'loss':>8} {'train acc':>9} {'test acc':>8} {'samples/s':>10} {'comm s':>8} "
        f"{'exposed s':>9} {'overlap':>7} {'B_simple':>9}"
    )

    writer = MetricsWriter(args.metrics) if args.metrics and rank == 0 else None
    comm.Barrier()
    timer = StepTimer()
    history: list[StepTiming] = []
    test_acc = float("nan")
    profiled = False
    for epoch in range(start_epoch, args.epochs + 1):
        sampler.set_epoch(epoch)
        batches = iter(loader)
        epoch_steps: list[StepTiming] = []
        stats = np.zeros(3)  # loss sum, correct, samples (this rank)
        bar = progress(
            range(steps_per_epoch),
            rank == 0 and not (args.quiet or args.no_progress),
            f"epoch {epoch}/{args.epochs}",
            steps_per_epoch,
        )
        for _ in bar:
            step += 1
            profile_now = bool(args.profile) and not profiled and step >= args.profile_step
            if profile_now:
                comm.Barrier()  # line the ranks' clocks up for the timeline
                timer = StepTimer(keep_intervals=True)
            timing = timer.start_step()
            loss_value = 0.0
            for k in range(args.accumulation):
                x, y = next(batches)
                last = k == args.accumulation - 1
                with contextlib.nullcontext() if last else ddp.no_sync():
                    with timer.phase("forward"):
                        logits = ddp(x)
                        loss = F.cross_entropy(logits, y)
                        if args.accumulation > 1:
                            loss = loss * (1.0 / args.accumulation)
                    with timer.phase("backward"):
                        loss.backward()
                loss_value += loss.item()
                stats += (loss.item() * len(y) * args.accumulation, (logits.data.argmax(1) == y.data).sum(), len(y))
                timing.samples += len(y) * size
            if size > 1:  # backward's last moments were spent waiting for communication
                exposed = ddp.stats.exposed_seconds
                timing.backward -= exposed
                timing.exposed_comm += exposed
                timing.comm = ddp.stats.comm_seconds
            with timer.phase("optimizer"):
                if args.clip_grad_norm:
                    minidl.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm)
                opt.step()
                opt.zero_grad()
                schedule.step()
            if noise is not None:
                noise.update(ddp.stats.local_sq_norm, ddp.stats.global_sq_norm)
            history.append(timing)
            epoch_steps.append(timing)
            if profile_now:
                profiled = True
                _save_profile(args.profile, timer, ddp, comm, step, say)
            if writer is not None:
                writer.write(_step_row(epoch, step, loss_value, opt, timing, noise))
        dist.all_reduce(stats, comm=comm)
        test_acc = evaluate(model, test_set, comm)
        ep = summarize(epoch_steps)
        b_simple = noise.b_simple if noise else float("nan")
        say(
            f"{epoch:>5} {stats[0] / stats[2]:>8.4f} {stats[1] / stats[2]:>9.4f} {test_acc:>8.4f} "
            f"{ep['samples_per_second']:>10.0f} {ep['comm']:>8.3f} {ep['exposed_comm']:>9.3f} "
            f"{_pct(ep['overlap_efficiency']):>7} {b_simple:>9.1f}"
        )
        if writer is not None:
            writer.write(
                {
                    "kind": "epoch",
                    "epoch": epoch,
                    "step": step,
                    "loss": stats[0] / stats[2],
                    "train_accuracy": stats[1] / stats[2],
                    "test_accuracy": test_acc,
                    "samples_per_second": ep["samples_per_second"],
                    "b_simple": b_simple,
                }
            )
        if ckpt is not None and rank == 0 and (epoch % args.checkpoint_every == 0 or epoch == args.epochs):
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(ckpt, model, opt, schedule, epoch=epoch, step=step, rng=False)
    if writer is not None:
        writer.close()
    ddp.close()
    return _summary(args, size, global_batch, lr, history, test_acc, noise, launch, say)


def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.0f}%"


def _step_row(epoch: int, step: int, loss: float, opt: Any, t: StepTiming, noise: Any) -> dict[str, Any]:
    row = {"kind": "step", "epoch": epoch, "step": step, "loss": loss, "lr": opt.param_groups[0]["lr"]}
    row.update(t.as_dict())
    row["samples_per_second"] = t.samples / t.total if t.total > 0 else float("nan")
    row["b_simple"] = noise.b_simple if noise else float("nan")
    return row


def _save_profile(path: str, timer: StepTimer, ddp: Any, comm: Any, step: int, say: Printer) -> None:
    from minidl.distributed.timeline import plot_step_timeline

    intervals = list(timer.current.intervals)
    exposed = ddp.stats.exposed_seconds
    last_backward = max((i for i, iv in enumerate(intervals) if iv[0] == "backward"), default=None)
    if last_backward is not None and exposed > 0:  # split backward's final wait out as exposed comm
        _, start, end = intervals[last_backward]
        intervals[last_backward] = ("backward", start, end - exposed)
        intervals.append(("exposed_comm", end - exposed, end))
    intervals += [(f"bucket {b}", s - timer.origin, e - timer.origin) for b, s, e in ddp.stats.intervals]
    gathered = comm.gather(intervals, root=0)  # once per run: a small pickle is fine here
    if comm.Get_rank() == 0:
        out = plot_step_timeline(
            gathered,
            path,
            title=f"step {step}: {ddp.algorithm} allreduce, {len(ddp.buckets)} bucket(s), {comm.Get_size()} ranks",
        )
        say(f"timeline of step {step} written to {out}")


def _summary(
    args: Any,
    size: int,
    global_batch: int,
    lr: float,
    history: list[StepTiming],
    test_acc: float,
    noise: Any,
    launch: float,
    say: Printer,
) -> dict[str, Any]:
    total = summarize(history)
    wall = time.perf_counter() - launch
    result = {
        "ranks": size,
        "model": args.model,
        "dataset": args.dataset,
        "global_batch": global_batch,
        "lr": lr,
        "test_accuracy": test_acc,
        "wall_seconds": wall,
        "b_simple": noise.b_simple if noise else float("nan"),
    }
    for key, value in total.items():
        timed = key in ("forward", "backward", "exposed_comm", "optimizer", "comm", "total")
        result[f"{key}_seconds" if timed else key] = value
    if args.baseline_throughput:
        result["scaling_efficiency"] = total["samples_per_second"] / (size * args.baseline_throughput)
    t = total["total"] or float("nan")
    lines = [
        f"done: test accuracy {test_acc:.4f} after {args.epochs} epochs on {size} rank(s); {wall:.1f} s wall, "
        f"{total['samples_per_second']:.0f} samples/s",
        "  where the step time went (seconds, share):",
        *(
            f"    {name:<13} {total[name]:8.3f}  {100 * total[name] / t:5.1f}%"
            for name in ("forward", "backward", "exposed_comm", "optimizer")
        ),
        f"  allreduce total {total['comm']:.3f} s, hidden behind backward: {_pct(total['overlap_efficiency'])}",
    ]
    if noise is not None:
        lines.append(f"  gradient noise scale B_simple ~ {result['b_simple']:.0f} (global batch {global_batch})")
    if "scaling_efficiency" in result:
        lines.append(f"  scaling efficiency vs 1 rank: {100 * result['scaling_efficiency']:.0f}%")
    say("\n".join(lines), always=True)
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
