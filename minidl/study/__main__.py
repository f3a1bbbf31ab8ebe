"""python -m minidl.study: how many workers, at which batch, with which recipe and allreduce, reach a target soonest.

Commands:
  batch-scaling   steps and epochs to a target accuracy vs global batch, per recipe, tuned per batch
  plan            predicted time to accuracy vs workers (1..4096) per allreduce algorithm
  validate        the planner vs real mpiexec runs of the trainer at p = 1, 2, 4
  compare         trainer runs side by side from their --metrics files

Examples:
  python -m minidl.study batch-scaling --out study/            # about 5 minutes on 2 cores
  python -m minidl.study batch-scaling --quick --out quick/    # under a minute
  python -m minidl.study plan --study study/ --preset ib-edr
  python -m minidl.study validate --study study/ --link 1Gbps,50us
  python -m minidl.study compare runs/a.jsonl runs/b.jsonl --out cmp/
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from minidl.study.errors import StudyError
from minidl.study.options import HelpFormatter, int_list, power_range

PROG = "python -m minidl.study"


def add_batch_scaling(sub: Any) -> None:
    from minidl.experiments import DATASETS, MODELS

    p = sub.add_parser(
        "batch-scaling",
        help="steps to a target accuracy vs global batch size",
        description="Train the same model at global batch sizes 2^k (in one process: the same updates as "
        "data-parallel ranks), with a small learning-rate grid per batch and several seeds, for each recipe; "
        "record steps and epochs to a target accuracy, final accuracy, generalization gap, sharpness and the "
        "gradient noise scale; write report.md, PNG plots, results.csv and results.json to --out.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--out", default="study", help="results directory")
    p.add_argument("--quick", action="store_true", help="a small configuration that runs in under a minute")
    p.add_argument("--resume", action="store_true", help="keep the runs already in --out and run only the rest")
    p.add_argument(
        "--dataset", default="digits", choices=DATASETS, metavar="NAME", help=f"one of {', '.join(DATASETS)}"
    )
    p.add_argument(
        "--model",
        choices=MODELS,
        metavar="NAME",
        help="one of mlp, lenet, resnet, transformer (default: the trainer's for the dataset)",
    )
    p.add_argument("--hidden", type=int_list, default=(128,), help="MLP hidden widths, comma-separated")
    p.add_argument("--data-dir", help="directory of MNIST-format IDX files")
    p.add_argument("--train-size", type=int, help="training samples of a procedural dataset")
    p.add_argument("--eval-size", type=int, default=1000, help="test samples in the fixed evaluation subset")
    p.add_argument(
        "--batches",
        type=power_range,
        help="global batch sizes: LO..HI (powers of two) or a list (default 8..1024; --quick 16,64,256)",
    )
    p.add_argument("--recipes", default="sgd,momentum", help="comma-separated: sgd, momentum, lars, lamb")
    p.add_argument("--lrs", type=int, help="learning rates per batch (default 3; --quick 2)")
    p.add_argument("--lr-spacing", type=float, default=2.0, help="factor between neighbouring learning rates")
    p.add_argument("--seeds", type=int, help="seeds per (batch, lr) (default 3; --quick 1)")
    p.add_argument("--epochs", type=float, help="training budget in epochs (default 10; --quick 3)")
    p.add_argument("--min-steps", type=int, help="... but at least this many steps (default 200; --quick 60)")
    p.add_argument("--warmup-epochs", type=float, default=0.5, help="warmup length for recipes that warm up")
    p.add_argument("--target", type=float, help="target test accuracy (default: 98%% of the smallest batch's)")
    p.add_argument(
        "--noise-batch", type=int, help="batch whose seed-0 runs measure B_simple (default 32 or the smallest)"
    )
    p.add_argument("--no-sharpness", action="store_true", help="skip the Hessian eigenvalue of each run")
    p.add_argument("--sweep", help="also sweep width=W1,W2,... or train-size=N1,N2,... at a fixed batch")
    p.add_argument("--sweep-batch", type=int, help="batch for --sweep (default: the smallest)")
    p.add_argument(
        "--comm-hook",
        action="append",
        metavar="NAME[:KEY=VALUE,...]",
        help="also run every recipe with this communication hook (repeatable; e.g. powersgd:rank=2, "
        "topk:ratio=0.01, fp16, bf16) on --hook-ranks virtual ranks, to compare steps to target",
    )
    p.add_argument("--hook-ranks", type=int, default=4, help="virtual ranks for --comm-hook runs (default 4)")
    p.add_argument(
        "--link",
        help="with --comm-hook: also time a step of each hook with the trainer under mpiexec on --hook-ranks "
        "ranks over this emulated link (e.g. 1Gbps,50us) and report time to target",
    )
    p.add_argument("--threads", type=int, default=1, help="BLAS/numba threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_batch_scaling, parser=p)


def cmd_batch_scaling(args: argparse.Namespace) -> int:
    import time

    from minidl.study.batch_scaling import QUICK, StudyConfig, run_study
    from minidl.study.report import headline
    from minidl.threads import configure_threads

    hooks = comm_hook_specs(args.comm_hook or [])
    for name in ("lrs", "seeds", "min_steps", "eval_size", "threads", "train_size", "hook_ranks"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise StudyError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.lr_spacing <= 1 or (args.epochs is not None and args.epochs <= 0) or args.warmup_epochs < 0:
        raise StudyError("--lr-spacing must exceed 1, --epochs be positive and --warmup-epochs non-negative")
    configure_threads(args.threads)
    base = dict(QUICK) if args.quick else {}
    given = {
        "batches": args.batches,
        "lr_points": args.lrs,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "min_steps": args.min_steps,
    }
    base.update({k: v for k, v in given.items() if v is not None})
    config = StudyConfig(
        dataset=args.dataset,
        model=args.model,
        hidden=args.hidden,
        data_dir=args.data_dir,
        train_size=args.train_size,
        eval_size=args.eval_size,
        recipes=tuple(r.strip() for r in args.recipes.split(",") if r.strip()),
        lr_spacing=args.lr_spacing,
        warmup_epochs=args.warmup_epochs,
        target=args.target,
        noise_batch=args.noise_batch,
        sharpness=not args.no_sharpness,
        sweep=args.sweep,
        sweep_batch=args.sweep_batch,
        comm_hooks=("none", *hooks),
        hook_ranks=args.hook_ranks,
        **base,
    )
    if args.link and not hooks:
        raise StudyError("--link times the --comm-hook runs: give at least one --comm-hook")
    start = time.perf_counter()
    outcome = run_study(config, args.out, resume=args.resume, progress=not args.no_progress)
    print(
        f"batch-scaling: {outcome.new_runs} run(s) now, {outcome.skipped} kept; target {outcome.target:.2f}; "
        f"{time.perf_counter() - start:.0f} s"
    )
    for line in headline(outcome):
        print("  " + line)
    if hooks:
        from minidl.study.hook_timing import hook_table

        for line in hook_table(outcome, args.link):
            print("  " + line)
    print(f"report: {outcome.out / 'report.md'}")
    return 0


def comm_hook_specs(given: list[str]) -> list[str]:
    """The --comm-hook values in canonical spelling, "none" and repeats dropped; a bad one is a StudyError."""
    from minidl.distributed import format_comm_hook, parse_comm_hook

    specs = []
    for text in given:
        try:
            spec = format_comm_hook(*parse_comm_hook(text))
        except ValueError as e:
            raise StudyError(str(e)) from None
        if spec != "none" and spec not in specs:
            specs.append(spec)
    return specs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_batch_scaling(sub)
    from minidl.study import compare, plan, validate

    for command in (plan, validate, compare):
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sub = args.parser
    try:
        return args.run(args)
    except StudyError as e:
        sub.print_usage(sys.stderr)
        print(f"{sub.prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
