"""Data-parallel training with every cost visible: compute, communication, overlap, convergence.

Run on 4 ranks:   mpiexec -n 4 python -m minidl.train
Run on 1 rank:    python -m minidl.train

Each rank trains a replica on its own shard of every global batch; DistributedDataParallel
averages the gradients with the project's hand-written allreduce (--algorithm), in buckets,
overlapped with backward. The global batch is batch-size x ranks x accumulation.

Checkpoints (--checkpoint-dir) are named after the run and kept for the last --keep-checkpoints
epochs; --resume continues the newest run, applying and announcing changed flags (lr, epochs,
ranks) and refusing changes of the model, the optimizer or the dataset. A NaN or Inf in the
gradients stops the run, naming the step and the first parameter affected, unless
--skip-nonfinite skips such steps.

Examples:
  mpiexec -n 4 python -m minidl.train --model lenet --epochs 10
  mpiexec -n 2 python -m minidl.train --link 10Gbps,50us --profile step.png
  mpiexec -n 2 python -m minidl.train --link 1Gbps,100us --bucket-mb auto --trace trace.json
  mpiexec -n 4 python -m minidl.train --dataset synthetic-images --model resnet --optimizer lars \\
      --lr 0.1 --base-batch 128 --warmup-epochs 2 --schedule cosine --metrics runs/r.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import minidl
import minidl.functional as F
from minidl import distributed as dist
from minidl import optim
from minidl.checkpoint import CheckpointSeries, load_checkpoint
from minidl.data import DataLoader, DistributedSampler
from minidl.distributed import DistributedDataParallel, GradientNoiseScale
from minidl.distributed.finite import first_nonfinite
from minidl.distributed.timing import StepTimer, StepTiming, summarize
from minidl.distributed.trace import StepTracer, split_exposed
from minidl.experiments import build_model, load_dataset
from minidl.metrics import MetricsWriter
from minidl.optim import lr_scheduler
from minidl.threads import configure_threads
from minidl.train_options import parse_args as _parse_args
from minidl.train_options import resume_changes, run_config

PRINTED_SKIPS = 3  # skipped steps announced one by one; later ones are only counted


class TrainingError(Exception):
    """The run cannot go on (a non-finite gradient, a non-finite model to checkpoint); raised on
    every rank at the same step, so the job ends cleanly with one message."""


class UnpaddedShard(DistributedSampler):
    """Rank r's samples without the padding: every sample once per epoch; shards differ by at most one sample."""

    def indices(self) -> np.ndarray:
        return super().indices()[: len(self)]  # positions r, r + R, ... below n come first; the rest is padding

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.num_replicas))


def _most_steps(local_steps: int, comm: Any) -> int:
    """The largest number of steps any rank has in an epoch (what the schedule is laid out for)."""
    most = np.array([local_steps], np.int64)
    dist.all_reduce(most, "max", comm=comm)
    return int(most[0])


def parse_args(argv: list[str] | None = None, comm: Any = None) -> argparse.Namespace:
    """The trainer's options, checked (see :mod:`minidl.train_options`)."""
    return _parse_args(argv, __doc__, comm)


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


def make_schedule(args: argparse.Namespace, opt: optim.Optimizer, steps_per_epoch: int, done: int = 0) -> Any:
    """A per-step schedule: optional linear warmup from lr/10, then constant, cosine or step decay;
    advanced past the ``done`` steps of a resumed run (every schedule is a closed form of the step)."""
    total = args.epochs * steps_per_epoch
    warm = min(int(round(args.warmup_epochs * steps_per_epoch)), total - 1)
    after = total - warm
    if args.schedule == "cosine":
        main = lr_scheduler.CosineAnnealingLR(opt, after)
    elif args.schedule == "step":
        main = lr_scheduler.StepLR(opt, step_size=max(after // 3, 1), gamma=0.1)
    else:
        main = lr_scheduler.LambdaLR(opt, lambda t: 1.0)
    schedule = main
    if warm > 0:
        schedule = lr_scheduler.SequentialLR(opt, [lr_scheduler.LinearWarmup(opt, warm, 0.1), main], milestones=[warm])
    for _ in range(done):
        schedule.step()
    return schedule


def apply_hyperparameters(opt: optim.Optimizer, lr: float, args: argparse.Namespace) -> None:
    """This run's lr, momentum and weight decay over those a loaded optimizer state brought back."""
    for group in opt.param_groups:
        group["lr"] = group["initial_lr"] = lr
        for key in ("momentum", "weight_decay"):
            if key in group:
                group[key] = getattr(args, key)


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


def open_metrics(path: str, append: bool, config: dict[str, Any]) -> MetricsWriter:
    """A writer for ``path`` that starts with the run's ``config``; with ``append`` (a resumed run)
    the rows already there are kept instead (the original run's configuration among them).

    The old rows are copied into a new file which then replaces the old one in a single rename,
    so a crash at any moment leaves either the old file or the complete new one.
    """
    target = Path(path)
    if not append or not target.exists():
        return MetricsWriter(target, config=config)
    staging = target.with_name(f".{target.stem}.resumed{target.suffix}")
    writer = MetricsWriter(staging)
    with target.open(newline="") as fh:
        rows = csv.DictReader(fh) if target.suffix == ".csv" else (json.loads(line) for line in fh if line.strip())
        for row in rows:
            writer.write(row)
    os.replace(staging, target)  # the writer's open file follows the rename
    writer.path = target
    return writer


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train; returns the summary. Option mistakes exit with status 2, a run that cannot go on
    raises :class:`TrainingError` (on every rank)."""
    launch = time.perf_counter()
    comm = dist.world()
    args = parse_args(argv, comm)
    rank, size = comm.Get_rank(), comm.Get_size()
    say = Printer(rank, args.quiet)
    threads = configure_threads(args.threads, comm)
    if args.timeout is not None:
        dist.set_timeout(args.timeout)

    minidl.manual_seed(args.seed + rank)  # deliberately different; DDP broadcasts rank 0's weights
    train_set, test_set, info = load_dataset(args.dataset, args.data_dir, args.train_size, args.seed)
    model = build_model(args.model, info, args.hidden, args.depth)
    if args.sync_bn:
        model = dist.convert_sync_batchnorm(model, comm)
    config = run_config(args, size)
    global_batch, lr = config["global_batch"], config["scaled_lr"]
    shard = UnpaddedShard if args.uneven else DistributedSampler
    sampler = shard(len(train_set), num_replicas=size, rank=rank, shuffle=True, seed=args.seed)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, drop_last=not args.uneven)
    local_steps = len(loader) // args.accumulation  # with --uneven, ranks may differ: the schedule follows the most
    steps_per_epoch = _most_steps(local_steps, comm) if args.uneven else local_steps
    if steps_per_epoch < 1:
        raise TrainingError(
            f"{len(train_set)} training samples give no full step of {args.batch_size} x {size} ranks x "
            f"{args.accumulation}; lower --batch-size or --accumulation"
        )
    opt = make_optimizer(args.optimizer, model.parameters(), lr, args.momentum, args.weight_decay)
    start_epoch = 1
    if args.resume_from:
        tree = load_checkpoint(args.resume_from, model, opt, restore_rng=False)
        start_epoch = int(tree["epoch"]) + 1
        apply_hyperparameters(opt, lr, args)
        say(f"resumed from {args.resume_from} after epoch {tree['epoch']}", always=True)
        for line in resume_changes(tree["extra"]["config"], config):
            say(f"  {line}", always=True)
    step = (start_epoch - 1) * steps_per_epoch
    schedule = make_schedule(args, opt, steps_per_epoch, done=step)
    # The noise scale compares local and averaged gradient norms; a lossy hook's average is not the average.
    exact = args.comm_hook == "none"
    noise = GradientNoiseScale(args.batch_size * args.accumulation, global_batch) if size > 1 and exact else None
    series = _checkpoints(args, say) if rank == 0 and args.checkpoint_dir else None
    profile_at = _profile_step(args, step, steps_per_epoch, say)
    bucket_plan, bucket_mb = _bucket_size(args, model, loader, comm, noise is not None, say)

    ddp = DistributedDataParallel(
        model,
        comm,
        algorithm=args.algorithm,
        bucket_cap_mb=bucket_mb,
        overlap=not args.no_overlap,
        measure_noise_scale=noise is not None,
        link=args.link,
        ranks_per_node=args.ranks_per_node,
    )
    hook_state, hook = dist.make_comm_hook(args.comm_hook)
    if hook is not None:  # not with --zero-stage 2, whose reduce-scatter is a hook of its own (train_options)
        ddp.register_comm_hook(hook_state, hook)
    if args.zero_stage:  # shard the plain optimizer: its groups (the schedule drives them) and any resumed state
        opt = dist.ZeroRedundancyOptimizer.from_optimizer(opt, ddp, args.zero_stage)
    say(
        f"minidl.train: {args.model} on {args.dataset} ({len(train_set)} train / {len(test_set)} test), "
        f"{size} rank(s), global batch {global_batch} = {args.batch_size} x {size} ranks x {args.accumulation}, "
        f"lr {lr:g} ({args.optimizer}, {args.schedule}), allreduce={args.algorithm}, "
        f"overlap={'off' if args.no_overlap else 'on'}, {threads} thread(s)/rank"
        + (", SyncBatchNorm" if args.sync_bn else "")
        + (f", link {args.link}" if args.link else "")
        + (f", comm hook {args.comm_hook}" if args.comm_hook != "none" else "")
        + (f", {args.ranks_per_node} rank(s) per node" if args.ranks_per_node else "")
        + (", uneven shards (join)" if args.uneven else "")
    )
    say(
        f"{'epoch':>5} {'loss':>8} {'train acc':>9} {'test acc':>8} {'samples/s':>10} {'comm s':>8} "
        f"{'exposed s':>9} {'overlap':>7} {'B_simple':>9}"
    )

    with contextlib.ExitStack() as cleanup:
        cleanup.callback(ddp.close)
        writer = None
        if args.metrics and rank == 0:
            writer = open_metrics(args.metrics, append=bool(args.resume_from), config=config)
            cleanup.callback(writer.close)
        comm.Barrier()
        timer = StepTimer(keep_intervals=bool(args.trace))
        tracer = StepTracer(timer.origin, args.trace_steps) if args.trace else None
        history: list[StepTiming] = []
        test_acc = float("nan")
        skipped = 0
        wire = np.zeros(3)  # synchronised steps, bytes the hooks sent, bytes of gradient they reduced (this rank)
        for epoch in range(start_epoch, args.epochs + 1):
            sampler.set_epoch(epoch)
            batches = iter(loader)
            epoch_steps: list[StepTiming] = []
            stats = np.zeros(3)  # loss sum, correct, samples (this rank, steps not skipped)
            bar = progress(
                range(local_steps),
                rank == 0 and not (args.quiet or args.no_progress),
                f"epoch {epoch}/{args.epochs}",
                local_steps,
            )
            joining = ddp.join(optimizer=opt) if args.uneven else contextlib.nullcontext()
            with joining:  # a rank out of batches shadows the others' allreduces until all are done
                for _ in bar:
                    step += 1
                    profile_now = step == profile_at
                    if profile_now:
                        comm.Barrier()  # line the ranks' clocks up for the timeline
                        timer = StepTimer(keep_intervals=True)
                    timing = timer.start_step()
                    loss_value, step_stats, bad_loss = _forward_backward(args, ddp, batches, timer, timing, size)
                    if size > 1:  # backward's last moments were spent waiting for communication
                        exposed = ddp.stats.exposed_seconds
                        timing.backward -= exposed
                        timing.exposed_comm += exposed
                        timing.comm = ddp.stats.comm_seconds
                        wire += (1, ddp.stats.wire_bytes, ddp.stats.bytes)
                    skip = _update(
                        args, ddp, model, opt, schedule, timer, f"step {step} (epoch {epoch})", bad_loss, skipped, say
                    )
                    if skip:
                        skipped += 1
                    else:
                        stats += step_stats
                        if noise is not None:
                            noise.update(ddp.stats.local_sq_norm, ddp.stats.global_sq_norm)
                    history.append(timing)
                    epoch_steps.append(timing)
                    if tracer is not None:
                        tracer.record(step, timing.intervals, timer.origin, ddp)
                    if profile_now:
                        _save_profile(args.profile, timer, ddp, comm, step, say)
                    if writer is not None:
                        writer.write(_step_row(epoch, step, loss_value, opt, timing, noise, skip))
            for _ in range(steps_per_epoch - local_steps):  # a rank that joined early: its schedule catches up
                schedule.step()
            step += steps_per_epoch - local_steps
            dist.all_reduce(stats, comm=comm)
            test_acc = evaluate(model, test_set, comm)
            ep = summarize(epoch_steps)
            b_simple = noise.b_simple if noise else float("nan")
            loss, accuracy = (stats[0] / stats[2], stats[1] / stats[2]) if stats[2] else (math.nan, math.nan)
            say(
                f"{epoch:>5} {loss:>8.4f} {accuracy:>9.4f} {test_acc:>8.4f} "
                f"{ep['samples_per_second']:>10.0f} {ep['comm']:>8.3f} {ep['exposed_comm']:>9.3f} "
                f"{_pct(ep['overlap_efficiency']):>7} {b_simple:>9.1f}"
            )
            if writer is not None:
                writer.write(
                    {
                        "kind": "epoch",
                        "epoch": epoch,
                        "step": step,
                        "loss": loss,
                        "train_accuracy": accuracy,
                        "test_accuracy": test_acc,
                        "samples_per_second": ep["samples_per_second"],
                        "b_simple": b_simple,
                        "skipped_steps": skipped,
                    }
                )
            if args.checkpoint_dir and (epoch % args.checkpoint_every == 0 or epoch == args.epochs):
                _checkpoint(series, model, opt, epoch, step, config, say)
        if tracer is not None:
            _save_trace(args, tracer, ddp, comm, say)
    memory = _optimizer_memory(opt, comm)
    result = _summary(args, size, global_batch, lr, history, test_acc, noise, launch, skipped, say, memory, bucket_plan)
    if wire[0]:
        result.update(_wire_summary(args.comm_hook, *wire, say))
    return result


def _wire_summary(hook: str, steps: float, sent: float, reduced: float, say: Printer) -> dict[str, Any]:
    """The bytes per step a rank put on the wire (as its hook reports them) against the plain allreduce's."""
    per_step, plain = sent / steps, reduced / steps
    line = f"  on the wire per step: {per_step / 2**10:.1f} KiB"
    if hook != "none":
        line += f" with comm hook {hook}, {plain / 2**10:.1f} KiB uncompressed ({plain / per_step:.1f}x less)"
    say(line, always=True)
    return {"comm_hook": hook, "wire_bytes_per_step": per_step, "uncompressed_bytes_per_step": plain}


def _update(
    args: argparse.Namespace,
    ddp: Any,
    model: Any,
    opt: Any,
    schedule: Any,
    timer: StepTimer,
    where: str,
    bad_loss: float | None,
    skipped: int,
    say: Printer,
) -> bool:
    """Apply the step's averaged gradients; if they hold NaN or Inf, stop the run (TrainingError) or,
    with --skip-nonfinite, skip the update and return True. Every rank holds the same gradients, so
    every rank makes the same choice."""
    bad = (opt if args.zero_stage else ddp).first_nonfinite_gradient()  # ZeRO 2: only the shard is averaged
    if bad is None:
        with timer.phase("optimizer"):
            if args.clip_grad_norm and args.zero_stage:
                opt.clip_grad_norm_(args.clip_grad_norm)
            elif args.clip_grad_norm:
                minidl.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm)
            opt.step()
            opt.zero_grad()
            schedule.step()
        return False
    opt.zero_grad()
    what = f"{where}: the gradients hold NaN or Inf (first: parameter {bad!r})"
    if bad_loss is not None:
        what += f"; the loss on rank {ddp.rank} was {bad_loss}"
    if not args.skip_nonfinite:
        raise TrainingError(f"{what}; --skip-nonfinite skips such steps")
    if skipped < PRINTED_SKIPS:
        later = "; later skips are only counted" if skipped + 1 == PRINTED_SKIPS else ""
        say(f"{what}: step skipped{later}")
    schedule.step()  # the data was consumed: the schedule moves on
    return True


def _forward_backward(
    args: argparse.Namespace, ddp: Any, batches: Any, timer: StepTimer, timing: StepTiming, size: int
) -> tuple[float, np.ndarray, float | None]:
    """The micro-steps of one step: (loss, [loss sum, correct, samples] of this rank, a non-finite loss or None).

    A non-finite loss on this rank is turned into NaN gradients, which the allreduce carries to
    every rank: all ranks then see the same non-finite gradients and decide the same way.
    """
    loss_value, bad_loss = 0.0, None
    stats = np.zeros(3)
    for k in range(args.accumulation):
        x, y = next(batches)
        last = k == args.accumulation - 1
        with contextlib.nullcontext() if last else ddp.no_sync():
            with timer.phase("forward"):
                logits = ddp(x)
                loss = F.cross_entropy(logits, y)
                if args.accumulation > 1:
                    loss = loss * (1.0 / args.accumulation)
                value = loss.item()
                if not math.isfinite(value):
                    bad_loss = value
                    loss = loss * math.nan
            with timer.phase("backward"):
                loss.backward()
        loss_value += value
        stats += (value * len(y) * args.accumulation, (logits.data.argmax(1) == y.data).sum(), len(y))
        timing.samples += len(y) * size
    return loss_value, stats, bad_loss


def _checkpoints(args: argparse.Namespace, say: Printer) -> CheckpointSeries:
    """Rank 0: this run's checkpoint series (the resumed run's, or a new run's next to the others)."""
    directory = Path(args.checkpoint_dir)
    run = CheckpointSeries.run_of(args.resume_from) if args.resume_from else CheckpointSeries.new_run_name()
    others = sorted(r for r in CheckpointSeries.runs(directory) if r != run)
    if others:
        if args.overwrite:
            say(f"--overwrite: the checkpoints of {', '.join(others)} in {directory} go when this run writes its first")
        else:
            say(
                f"{directory} holds checkpoints of {', '.join(others)}; this run ({run}) writes next to them "
                "(--resume continues the newest run, --overwrite replaces them)"
            )
    return CheckpointSeries(directory, run, keep=args.keep_checkpoints, replace_others=args.overwrite)


def _checkpoint(series: Any, model: Any, opt: Any, epoch: int, step: int, config: dict, say: Printer) -> None:
    """Save (rank 0), unless the model is no longer finite: then every rank stops, the last checkpoints intact."""
    bad = first_nonfinite((name, p.data) for name, p in model.named_parameters())
    if bad is not None:
        raise TrainingError(
            f"epoch {epoch}: parameter {bad!r} holds NaN or Inf; no checkpoint written over the last good one"
        )
    if isinstance(opt, dist.ZeroRedundancyOptimizer):  # every rank sends its shard; the file holds the whole state
        opt.consolidate_state_dict(to=0)
    if series is not None:
        path = series.save(epoch, model=model, optimizer=opt, step=step, rng=False, extra={"config": config})
        say(f"checkpoint {path}")


def _profile_step(args: argparse.Namespace, done: int, steps_per_epoch: int, say: Printer) -> int | None:
    """The step to profile: --profile-step, the first step of a run resumed past it, or the last step."""
    if not args.profile:
        return None
    last = args.epochs * steps_per_epoch
    if done >= last:
        return None
    if args.profile_step > last:
        say(
            f"--profile-step {args.profile_step} is past this run's last step ({last}): profiling step {last}",
            always=True,
        )
        return last
    return max(args.profile_step, done + 1)


def _pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.0f}%"


def _step_row(epoch: int, step: int, loss: float, opt: Any, t: StepTiming, noise: Any, skipped: bool) -> dict[str, Any]:
    row = {"kind": "step", "epoch": epoch, "step": step, "loss": loss, "lr": opt.param_groups[0]["lr"]}
    row["skipped"] = skipped
    row.update(t.as_dict())
    row["samples_per_second"] = t.samples / t.total if t.total > 0 else float("nan")
    row["b_simple"] = noise.b_simple if noise else float("nan")
    return row


def _save_profile(path: str, timer: StepTimer, ddp: Any, comm: Any, step: int, say: Printer) -> None:
    from minidl.distributed.timeline import plot_step_timeline

    intervals = split_exposed(timer.current.intervals, ddp.stats.exposed_seconds)
    intervals += [(f"bucket {b}", s - timer.origin, e - timer.origin) for b, s, e in ddp.stats.intervals]
    gathered = comm.gather(intervals, root=0)  # once per run: a small pickle is fine here
    if comm.Get_rank() == 0:
        out = plot_step_timeline(
            gathered,
            path,
            title=f"step {step}: {ddp.algorithm} allreduce, {len(ddp.buckets)} bucket(s), {comm.Get_size()} ranks",
        )
        say(f"timeline of step {step} written to {out}")


def _bucket_size(
    args: argparse.Namespace, model: Any, loader: Any, comm: Any, spare: bool, say: Printer
) -> tuple[Any, float]:
    """``--bucket-mb``, or with ``auto`` the predicted best (and its plan; None when given or on one rank);
    ``spare``: the last bucket carries the noise scale's extra element."""
    if args.bucket_mb != "auto":
        return None, args.bucket_mb
    if comm.Get_size() == 1:
        say("--bucket-mb auto: one rank, nothing to communicate: 25 MiB buckets")
        return None, 25.0
    from minidl.distributed.autobucket import choose_bucket_mb

    x, y = next(iter(loader))  # this rank's first batch: the measurement passes do not train
    spare_bytes = next(iter(model.parameters())).data.itemsize if spare else 0
    plan = choose_bucket_mb(
        model, lambda: F.cross_entropy(model(x), y), comm, args.algorithm, args.link, not args.no_overlap, spare_bytes
    )
    say(
        f"--bucket-mb auto: {plan.cap_mb:.4g} MiB -> {len(plan.buckets)} bucket(s); on {args.link} the predicted "
        f"allreduce time per step is {1e3 * plan.comm:.2f} ms, {1e3 * plan.exposed:.2f} ms of it exposed"
    )
    return plan, plan.cap_mb


def _save_trace(args: argparse.Namespace, tracer: StepTracer, ddp: Any, comm: Any, say: Printer) -> None:
    overlapped = ddp.world_size > 1 and ddp.overlap
    path = tracer.write(
        args.trace,
        comm,
        comm_thread="comm thread" if overlapped else "allreduce (main thread, --no-overlap)",
        algorithm=ddp.algorithm,
        link=str(ddp.link) if ddp.link else None,
        buckets=[b.nbytes for b in ddp.buckets],
    )
    if path is not None:
        say(f"trace of {tracer.steps} step(s) written to {path} (open it in https://ui.perfetto.dev)")


def _summary(
    args: Any,
    size: int,
    global_batch: int,
    lr: float,
    history: list[StepTiming],
    test_acc: float,
    noise: Any,
    launch: float,
    skipped: int,
    say: Printer,
    memory: dict[str, int] | None = None,
    bucket_plan: Any = None,
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
        "skipped_steps": skipped,
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
    if skipped:
        lines.append(f"  steps skipped for NaN/Inf gradients: {skipped}")
    if noise is not None:
        lines.append(f"  gradient noise scale B_simple ~ {result['b_simple']:.0f} (global batch {global_batch})")
    if "scaling_efficiency" in result:
        lines.append(f"  scaling efficiency vs 1 rank: {100 * result['scaling_efficiency']:.0f}%")
    if bucket_plan is not None:
        from minidl.distributed.autobucket import compare

        found, line = compare(bucket_plan, history)
        result.update(found)
        lines.append(line)
    if memory is not None:
        result.update(memory)
        stage = f"ZeRO stage {args.zero_stage}, sharded over {size} rank(s)" if args.zero_stage else "not sharded"
        lines.append(
            f"  optimizer state per rank: {memory['optimizer_state_bytes']:,} B ({stage}); averaged gradient kept "
            f"per rank: {memory['gradient_bytes_kept']:,} B (largest rank)"
        )
    say("\n".join(lines), always=True)
    return result


def _optimizer_memory(opt: Any, comm: Any) -> dict[str, int]:
    """Bytes of optimizer state and of averaged gradient each rank keeps, the largest over ranks (shards are uneven)."""
    if isinstance(opt, dist.ZeroRedundancyOptimizer):
        mem = opt.memory()
        state, grads = mem["optimizer_state"], mem["averaged_gradient"]
    else:
        state = sum(v.nbytes for s in opt.state.values() for v in s.values() if isinstance(v, np.ndarray))
        grads = sum(p.data.nbytes for g in opt.param_groups for p in g["params"])
    largest = np.array([state, grads], dtype=np.int64)
    dist.all_reduce(largest, "max", comm=comm)
    return {"optimizer_state_bytes": int(largest[0]), "gradient_bytes_kept": int(largest[1])}


def cli(argv: list[str] | None = None) -> int:
    """``python -m minidl.train``: 0, or 1 with one line from rank 0 when the run cannot go on.

    An exception on one rank only (a full disk under rank 0's checkpoint, a bug) ends the whole
    job within seconds, its traceback printed once (``abort_on_error``), instead of leaving the
    other ranks waiting in their next collective.
    """
    dist.abort_on_error()
    try:
        main(argv)
    except TrainingError as e:
        if dist.get_rank() == 0:
            print(f"python -m minidl.train: error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())  # not sys.exit: every rank ends here together, which is no reason to abort the job
