"""The trainer's options: parsed and checked before any work, and compared with a checkpoint's on resume.

A mistake must cost the user one line, not a traceback per rank and not a run that trains for an
epoch and then fails: every numeric flag is checked for sense (zero, negative, NaN and inf are
refused, never silently replaced), and the output paths are tried (rank 0 creates the
directories and opens the files the run will write) before the data is loaded. Every mistake is
one argparse-style line, printed by rank 0 only; every rank exits with status 2.

A checkpoint stores the run's configuration (:func:`run_config`). On ``--resume`` the flags that
define the model, the data and the optimizer's state cannot change (:func:`resume_refusals`);
the others may, and :func:`resume_changes` says what each change does to the run.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from minidl import distributed as dist
from minidl.checkpoint import CheckpointSeries
from minidl.experiments import DATASETS, DEFAULT_MODEL, DEFAULT_TRAIN_SIZE, MODELS, PROCEDURAL, fit_problem

OPTIMIZERS = ("sgd", "lars", "lamb", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")
METRICS_SUFFIXES = (".jsonl", ".csv")
PROFILE_SUFFIXES = (".png", ".svg", ".pdf")
TRACE_SUFFIXES = (".json",)

# Flags that must be at least 1, and floats that must be finite and positive or non-negative.
AT_LEAST_ONE = (
    "epochs",
    "batch_size",
    "accumulation",
    "checkpoint_every",
    "keep_checkpoints",
    "depth",
    "threads",
    "train_size",
    "base_batch",
    "profile_step",
    "trace_steps",
)
POSITIVE = ("lr", "bucket_mb", "baseline_throughput", "clip_grad_norm")
NON_NEGATIVE = ("momentum", "weight_decay", "warmup_epochs", "timeout")

# What a checkpoint's run is: these cannot change on resume (the saved state would not fit or mean the same).
FIXED = {
    "dataset": "the dataset",
    "train_size": "the training set",
    "model": "the model",
    "hidden": "the model",
    "depth": "the model",
    "optimizer": "the optimizer's state",
}


class Parser(argparse.ArgumentParser):
    """argparse whose messages are printed by rank 0 only (every rank still exits), and whose errors
    are one line each: the usage of this many options would bury them (``--help`` shows it)."""

    rank = 0

    def _print_message(self, message: str, file: Any = None) -> None:
        if self.rank == 0:
            super()._print_message(message, file)

    def error(self, message: str) -> NoReturn:
        self.errors([message])

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        # Every rank exits here together (the verdict is shared): a plain SystemExit, not the
        # sys.exit that collectives.abort_on_error turns into an MPI_Abort of the job.
        if message:
            self._print_message(message, sys.stderr)
        raise SystemExit(status)

    def errors(self, messages: list[str]) -> NoReturn:
        """Exit with status 2 after printing one ``prog: error:`` line per message."""
        for message in messages:
            self._print_message(f"{self.prog}: error: {message}\n", sys.stderr)
        self.exit(2)


def build_parser(description: str) -> Parser:
    p = Parser(
        prog="python -m minidl.train", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
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
    g.add_argument(
        "--train-size", type=int, help=f"training samples of a procedural dataset (default: {DEFAULT_TRAIN_SIZE})"
    )
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
    g.add_argument(
        "--skip-nonfinite",
        action="store_true",
        help="skip a step whose gradients hold NaN or Inf (all ranks decide together) instead of stopping",
    )
    g.add_argument("--seed", type=int, default=0, help="seed for initialisation and shuffling (default: 0)")
    g.add_argument("--threads", type=int, help="BLAS/numba threads per rank (default: cores / ranks on the node)")

    g = p.add_argument_group("communication")
    g.add_argument(
        "--algorithm",
        default="ring",
        metavar="NAME",
        help=f"allreduce algorithm for the gradients: {', '.join(dist.algorithms())} (default: ring)",
    )
    g.add_argument(
        "--bucket-mb",
        type=bucket_size,
        default=25.0,
        help="gradient bucket size in MiB, or 'auto': the size that the measured backward and the simulated "
        "allreduce on --link predict hides the most communication (default: 25)",
    )
    g.add_argument("--no-overlap", action="store_true", help="allreduce after backward instead of during it")
    g.add_argument(
        "--sync-bn",
        action="store_true",
        help="normalise with the statistics of the global batch: every BatchNorm becomes a SyncBatchNorm",
    )
    g.add_argument("--link", help="emulate a slower link: BANDWIDTH,LATENCY such as '10Gbps,20us', or a preset name")
    g.add_argument(
        "--comm-hook",
        default="none",
        metavar="NAME[:KEY=VALUE,...]",
        help=f"what crosses the wire for each gradient bucket: {dist.hook_names()} (default: none, the plain "
        "allreduce); e.g. powersgd:rank=2, topk:ratio=0.01, fp16, bf16",
    )
    g.add_argument(
        "--timeout",
        type=float,
        help="seconds a collective waits for every rank before raising, naming the missing ones "
        "(default: $COLLECTIVES_TIMEOUT or 300; 0: wait for ever)",
    )

    add_zero_options(p)
    add_node_options(p)

    g = p.add_argument_group("output")
    g.add_argument("--metrics", help="write per-step metrics to this .jsonl or .csv file (rank 0)")
    g.add_argument("--profile", help="save a per-rank timeline of one step to this .png/.svg/.pdf")
    g.add_argument("--profile-step", type=int, default=5, help="which step to profile (default: 5)")
    g.add_argument(
        "--trace",
        help="write a Chrome trace (.json) of the first --trace-steps steps, every rank and its communication "
        "thread, for https://ui.perfetto.dev or chrome://tracing (rank 0)",
    )
    g.add_argument("--trace-steps", type=int, default=20, help="steps recorded by --trace (default: 20)")
    g.add_argument("--baseline-throughput", type=float, help="samples/s of a 1-rank run, for scaling efficiency")
    g.add_argument(
        "--checkpoint-dir",
        help="save checkpoints here (rank 0) as RUN.epoch-NNNN.npz; a new run writes next to other runs' files",
    )
    g.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints (default: 1)")
    g.add_argument("--keep-checkpoints", type=int, default=3, help="newest checkpoints kept per run (default: 3)")
    g.add_argument("--resume", action="store_true", help="continue the newest run in --checkpoint-dir")
    g.add_argument("--overwrite", action="store_true", help="a new run replaces the checkpoints of other runs")
    g.add_argument("--quiet", action="store_true", help="print only the final summary")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_args(argv: list[str] | None, description: str, comm: Any = None) -> argparse.Namespace:
    """Parse and check the options on every rank; rank 0 also tries the output paths and reads the
    checkpoint to resume. Mistakes exit every rank with status 2 (printed once, by rank 0)."""
    comm = comm or dist.world()
    p = build_parser(description)
    p.rank = comm.Get_rank()
    args = p.parse_args(argv)
    errors = check_values(args)
    found: dict[str, Any] = {}
    if p.rank == 0:
        errors += check_paths(args, found)
    if comm.Get_size() > 1:  # rank 0's verdict on the paths and the checkpoint, once: a small pickle is fine
        errors, found = comm.bcast((errors, found), root=0)
    if not errors and args.resume:
        errors = resume_refusals(found["config"], run_config(args, comm.Get_size()))
    if errors:
        p.errors(errors)
    args.resume_from = found.get("resume_from")
    return args


def check_values(args: argparse.Namespace) -> list[str]:
    """One message per flag whose value makes no sense; fills in the model default and parses lists."""
    errors = []
    for name in AT_LEAST_ONE:
        value = getattr(args, name)
        if value is not None and value < 1:
            errors.append(f"{flag(name)} must be at least 1, got {value}")
    for name in POSITIVE + NON_NEGATIVE:
        value = getattr(args, name)
        if value is None or value == "auto":
            continue
        if not math.isfinite(value) or value < 0 or (value == 0 and name in POSITIVE):
            what = "a positive number" if name in POSITIVE else "a number >= 0"
            errors.append(f"{flag(name)} must be {what}, got {value}")
    if args.seed < 0:
        errors.append(f"--seed must be >= 0, got {args.seed}")
    if args.depth >= 1 and (args.depth - 2) % 6:
        errors.append(f"--depth must be 6n+2 (8, 14, 20, ...), got {args.depth}")
    try:
        args.hidden = tuple(int(h) for h in args.hidden.split(","))
        if any(h < 1 for h in args.hidden):
            errors.append(f"--hidden widths must be at least 1, got {','.join(map(str, args.hidden))}")
    except ValueError:
        errors.append(f"--hidden must be comma-separated integers, got {args.hidden!r}")
    try:
        dist.check_algorithm(args.algorithm)
    except ValueError as e:
        errors.append(str(e))
    try:
        args.link = dist.resolve_link(args.link)
    except ValueError as e:
        errors.append(str(e))
    errors += check_comm_hook(args)
    errors += check_node_options(args)
    args.model = args.model or DEFAULT_MODEL[args.dataset]
    if why := fit_problem(args.model, args.dataset):
        errors.append(why)
    if args.dataset in ("mnist", "fashion-mnist") and not args.data_dir:
        errors.append(f"--dataset {args.dataset} reads IDX files: pass --data-dir DIR (they are not downloaded)")
    if args.resume and not args.checkpoint_dir:
        errors.append("--resume needs --checkpoint-dir")
    if args.resume and args.overwrite:
        errors.append("--resume continues a run and --overwrite starts a new one: give one of them")
    if args.metrics and Path(args.metrics).suffix not in METRICS_SUFFIXES:
        errors.append(f"--metrics {args.metrics}: the file name must end in .jsonl or .csv")
    if args.profile and Path(args.profile).suffix not in PROFILE_SUFFIXES:
        errors.append(f"--profile {args.profile}: the file name must end in .png, .svg or .pdf")
    if args.trace and Path(args.trace).suffix not in TRACE_SUFFIXES:
        errors.append(f"--trace {args.trace}: the file name must end in .json")
    if args.bucket_mb == "auto" and args.link is None:
        errors.append(
            "--bucket-mb auto predicts each bucket's allreduce on the link: give --link (BANDWIDTH,LATENCY "
            "such as 10Gbps,50us, or a preset name)"
        )
    errors += check_zero(args)
    return errors


def check_comm_hook(args: argparse.Namespace) -> list[str]:
    """--comm-hook: a known hook with known keys and sensible values; rewritten in its canonical spelling
    (every key shown) so that the run's configuration records exactly what ran."""
    try:
        args.comm_hook = dist.format_comm_hook(*dist.parse_comm_hook(args.comm_hook))
    except ValueError as e:
        return [str(e)]
    if args.comm_hook != "none" and args.zero_stage == 2:
        return [
            f"--comm-hook {args.comm_hook} with --zero-stage 2: stage 2 reduce-scatters the gradients with a "
            "communication hook of its own; use --zero-stage 1 or --comm-hook none"
        ]
    return []


def check_paths(args: argparse.Namespace, found: dict[str, Any]) -> list[str]:
    """Rank 0: try every path the run will write, and find the checkpoint to resume (into ``found``)."""
    errors = []
    if args.data_dir and not Path(args.data_dir).is_dir():
        errors.append(f"--data-dir {args.data_dir}: no such directory")
    suffixes = {"metrics": METRICS_SUFFIXES, "profile": PROFILE_SUFFIXES, "trace": TRACE_SUFFIXES}
    for name in ("metrics", "profile", "trace"):
        path = getattr(args, name)
        if path and Path(path).suffix in suffixes[name]:
            if why := _unwritable_file(Path(path)):
                errors.append(f"{flag(name)} {path}: {why}")
    if args.checkpoint_dir:
        directory = Path(args.checkpoint_dir)
        if why := _unwritable_dir(directory):
            errors.append(f"--checkpoint-dir {directory}: {why}")
        elif args.resume:
            latest = CheckpointSeries.latest(directory)
            if latest is None:
                errors.append(f"--resume: {directory} holds no checkpoint (*.epoch-NNNN.npz)")
            else:
                try:
                    found["config"] = CheckpointSeries.config_of(latest)
                    found["resume_from"] = str(latest)
                except ValueError as e:
                    errors.append(f"--resume: {e}")
    return errors


def _unwritable_dir(directory: Path) -> str | None:
    """Why files cannot be written in ``directory`` (created if missing), or None."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        return f"cannot write there ({e.strerror or e})"
    return None


def _unwritable_file(path: Path) -> str | None:
    """Why ``path`` cannot be written (its directory is created if missing), or None; leaves no new file."""
    if path.is_dir():
        return "is a directory"
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a"):
            pass
    except OSError as e:
        return f"cannot write it ({e.strerror or e})"
    if not existed:
        os.unlink(path)
    return None


def bucket_size(text: str) -> float | str:
    """``--bucket-mb``: MiB as a number (checked with the other numbers), or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MiB (such as 25 or 0.5) or 'auto', got {text!r}") from None


# --------------------------------------------------------------------------- sharded optimizer (ZeRO)
ZERO_OPTIMIZERS = ("sgd", "adam", "adamw")  # elementwise updates: a shard may cut a parameter anywhere


def add_zero_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sharded optimizer (ZeRO)")
    g.add_argument(
        "--zero-stage",
        type=int,
        default=0,
        choices=(0, 1, 2),
        help="1: each rank keeps and updates 1/ranks of the optimizer state, then allgathers the parameters; "
        "2: also reduce-scatters the gradients, keeping only its shard averaged; 0: off (default)",
    )


def check_zero(args: argparse.Namespace) -> list[str]:
    """The combinations ZeRO cannot honour, one message each."""
    if not args.zero_stage:
        return []
    errors = []
    if args.optimizer not in ZERO_OPTIMIZERS:
        errors.append(
            f"--zero-stage {args.zero_stage} cuts parameters into flat shards, and --optimizer {args.optimizer} "
            f"needs per-parameter norms: use --optimizer {', '.join(ZERO_OPTIMIZERS)} or --zero-stage 0"
        )
    if args.link is not None:
        errors.append(
            f"--zero-stage {args.zero_stage} with --link: the parameter allgather (and stage 2's reduce-scatter) "
            "cannot be slowed to an emulated link, so the timings would flatter ZeRO; drop one of them"
        )
    return errors


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# --------------------------------------------------------------------------- the run's configuration
def global_batch(args: argparse.Namespace, ranks: int) -> int:
    return args.batch_size * ranks * args.accumulation


def scaled_lr(args: argparse.Namespace, ranks: int) -> float:
    """The learning rate used: ``--lr``, scaled linearly to the global batch when ``--base-batch`` is given."""
    return args.lr * global_batch(args, ranks) / args.base_batch if args.base_batch else args.lr


def run_config(args: argparse.Namespace, ranks: int) -> dict[str, Any]:
    """What defines this run (JSON-able), as stored in its checkpoints; fields that do not apply are None."""
    return {
        "dataset": args.dataset,
        "train_size": (args.train_size or DEFAULT_TRAIN_SIZE) if args.dataset in PROCEDURAL else None,
        "model": args.model,
        "hidden": list(args.hidden) if args.model == "mlp" else None,
        "depth": args.depth if args.model == "resnet" else None,
        "optimizer": args.optimizer,
        "ranks": ranks,
        "batch_size": args.batch_size,
        "accumulation": args.accumulation,
        "global_batch": global_batch(args, ranks),
        "lr": args.lr,
        "base_batch": args.base_batch,
        "scaled_lr": scaled_lr(args, ranks),
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "schedule": args.schedule,
        "warmup_epochs": args.warmup_epochs,
        "clip_grad_norm": args.clip_grad_norm,
        "sync_bn": bool(args.sync_bn),
        "comm_hook": args.comm_hook,
        "epochs": args.epochs,
        "seed": args.seed,
        "zero_stage": args.zero_stage,
    }


def resume_refusals(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """One message per flag that cannot change on resume but did."""
    return [
        f"--resume: the checkpoint's run has {flag(key)} {_show(saved.get(key))}, this run asks for "
        f"{_show(current[key])}; {what} cannot change on resume (start a new run without --resume, "
        "or in another --checkpoint-dir)"
        for key, what in FIXED.items()
        if saved.get(key) != current[key]
    ]


def resume_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What changed since the checkpoint (flags that may change) and what each change does to the run."""
    keys = [
        k
        for k in current
        # a key missing from the checkpoint's config predates the flag: nothing is known to have changed
        if k not in FIXED and k not in ("global_batch", "scaled_lr") and k in saved and saved[k] != current[k]
    ]
    if not keys:
        return []
    lines = [
        "changed since the checkpoint: "
        + ", ".join(f"{_name(k)} {_show(saved.get(k))} -> {_show(current[k])}" for k in keys)
    ]
    if saved.get("global_batch") != current["global_batch"]:
        lines.append(f"global batch {saved.get('global_batch')} -> {current['global_batch']}")
    if saved.get("scaled_lr") != current["scaled_lr"]:
        lines.append(f"learning rate {_show(saved.get('scaled_lr'))} -> {_show(current['scaled_lr'])}")
    if {"ranks", "batch_size", "seed"} & set(keys):
        lines.append("the data order (each rank's shard and batches) is no longer the uninterrupted run's")
    if {"epochs", "schedule", "warmup_epochs", "ranks", "batch_size", "accumulation"} & set(keys):
        lines.append("the learning-rate schedule is rebuilt for the new run length and resumed at its position")
    if {"momentum", "weight_decay", "clip_grad_norm"} & set(keys):
        lines.append("the optimizer's hyperparameters apply from the next step")
    if "comm_hook" in keys:
        lines.append("the gradients are communicated with the new hook from the next step (its state starts empty)")
    if "sync_bn" in keys:
        where = "across all ranks (SyncBatchNorm)" if current["sync_bn"] else "on each rank's own batch"
        lines.append(f"batch-norm statistics are now computed {where}; the running statistics carry over")
    if "zero_stage" in keys:
        lines.append("the optimizer state (saved whole) is sharded anew: the updates are the same numbers")
    return lines


def _name(key: str) -> str:
    return "ranks" if key == "ranks" else flag(key)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def add_node_options(p: argparse.ArgumentParser) -> None:
    """Hierarchical allreduce and uneven shards (minidl.distributed: ranks_per_node, join)."""
    g = p.add_argument_group("nodes and uneven inputs")
    g.add_argument(
        "--ranks-per-node",
        metavar="N|host",
        help="hierarchical gradient allreduce: reduce inside each node of N consecutive ranks (host: the ranks "
        "sharing a host), --algorithm among the node leaders, broadcast inside each node; --link then "
        "applies between nodes only",
    )
    g.add_argument(
        "--uneven",
        action="store_true",
        help="shard the training set without padding (every sample once per epoch, the last batch may be "
        "partial); ranks with fewer batches join the others until all are done (needs --accumulation 1)",
    )


def check_node_options(args: argparse.Namespace) -> list[str]:
    """Errors in the node options; turns --ranks-per-node into an int or "host"."""
    errors = []
    value = args.ranks_per_node
    if value is not None and value != "host":
        try:
            args.ranks_per_node = int(value)
        except ValueError:
            args.ranks_per_node = None
            errors.append(f"--ranks-per-node must be a positive integer or 'host', got {value!r}")
        else:
            if args.ranks_per_node < 1:
                errors.append(f"--ranks-per-node must be a positive integer or 'host', got {value}")
    if args.uneven and args.accumulation != 1:
        errors.append(f"--uneven needs --accumulation 1 (got {args.accumulation}): a rank may run out mid-step")
    hook = args.comm_hook != "none"
    if args.ranks_per_node is not None and (hook or args.zero_stage == 2):
        what = f"--comm-hook {args.comm_hook}" if hook else "--zero-stage 2"
        errors.append(
            f"--ranks-per-node with {what}: the hierarchical allreduce replaces DDP's default allreduce, and "
            f"{what} reduces the gradients with a hook of its own; drop one of them"
        )
    if args.uneven and (hook or args.zero_stage):
        what = f"--comm-hook {args.comm_hook}" if hook else f"--zero-stage {args.zero_stage}"
        errors.append(
            f"--uneven with {what}: a rank out of batches shadows DDP's default allreduce only, not the "
            f"collectives of {what}; drop one of them"
        )
    return errors
