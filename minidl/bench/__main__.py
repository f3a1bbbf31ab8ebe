"""Training-step time and memory of minidl against PyTorch CPU and a hand-written numpy floor.

    python -m minidl.bench                                  # all models, 1 and 2 threads
    python -m minidl.bench --models mlp,lenet --threads 1 --rounds 11 --json runs/bench.json
    python -m minidl.bench --numpy-reference                # also time minidl with MINIDL_NUMBA=0
    python -m minidl.bench --profile lenet                  # where the time goes, per op, numba vs numpy
    python -m minidl.bench --threading-trap                 # numba's threading layers vs OpenBLAS threads
    python -m minidl.bench --op-overhead                    # per-op engine overhead on tiny tensors

Each model (an MLP 784-512-512-10 at batch 128, LeNet-5 on 28x28 at batch 64, a ResNet basic
block on 32x32x3 at batch 32, the tiny transformer classifier on 64 sequences of 16 tokens) is
built once in minidl; the PyTorch twin gets the same architecture and a copy of the same
weights, and the two must give the same loss before anything is timed. A step is forward,
cross-entropy, backward and an SGD-momentum update on one fixed batch.

Timing: after warm-up, the engines take single steps in turn, in an order that rotates with
every step, ``--rounds`` x ``--steps`` steps each; step i of every engine forms a pair, taken
within a few step times of each other, so the machine's drift cancels in the pair's ratio.
Above one thread each timed step follows an untimed step of the same engine (``--lead-in``, 1 by
default), so that the previous engine's spinning OpenMP or BLAS threads are off the cores.
Reported: each engine's median step time, and for each pair of engines the median (min-max) of
the per-pair ratios (quartiles too in the JSON, with every step's time). The numpy floor is an
MLP written by hand in numpy with no autograd at all: the time an engine with zero overhead
would take with the same GEMMs.

Peak memory of a step is measured in fresh processes per engine (median of ``--memory-repeats``;
see ``minidl.bench.memory``). ``--json FILE`` writes every step's time with the machine, its
load before and after, the library versions, threadpoolctl's BLAS report, the BLAS-steering
environment and the command line (``minidl.bench.report``).

PyTorch is optional (install it in a separate environment; the project never depends on it);
without it the torch columns are omitted.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from minidl.bench.memory import measure_memory, probe_memory
from minidl.bench.overhead import op_overhead
from minidl.bench.profile import profile_model
from minidl.bench.report import (
    blas_summary,
    drop_blas_overrides,
    load_average,
    machine_info,
    print_table,
    write_json,
)
from minidl.bench.timing import run_model
from minidl.bench.trap import threading_trap, trap_child
from minidl.bench.workloads import MODELS, set_threads, torch_available


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m minidl.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--threads", default="1,2", help="thread counts to run, comma-separated (default: 1,2)")
    p.add_argument("--rounds", type=int, default=7, help="rounds per model (default: 7)")
    p.add_argument("--steps", type=int, default=10, help="interleaved single steps per engine per round (default: 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per engine first (default: 3)")
    p.add_argument(
        "--lead-in",
        type=int,
        default=None,
        metavar="N",
        help="untimed steps of an engine before each of its timed steps, so that the previous engine's spinning "
        "threads (OpenMP, OpenBLAS) are off the cores (default: 1 above one thread, 0 at one thread)",
    )
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if it is installed")
    p.add_argument("--numpy-reference", action="store_true", help="also time minidl with its numpy references")
    p.add_argument(
        "--memory-repeats",
        type=int,
        default=3,
        help="fresh processes per engine for the peak-memory probe, median reported; 0 skips it (default: 3)",
    )
    p.add_argument("--json", help="write the results to this file")
    p.add_argument(
        "--keep-blas-env",
        action="store_true",
        help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE if set (by default the run re-executes without them)",
    )
    p.add_argument("--profile", metavar="MODEL", help="time minidl's ops for MODEL, numba kernels on vs off, and exit")
    p.add_argument("--top", type=int, default=20, help="rows of --profile output (default: 20)")
    p.add_argument(
        "--threading-trap",
        action="store_true",
        help="measure numba's threading layers against OpenBLAS's threads (im2col + GEMM, 2 threads) and exit",
    )
    p.add_argument(
        "--op-overhead",
        action="store_true",
        help="time the engine's per-op overhead on chains of tiny-tensor ops (rounds x steps pairs) and exit",
    )
    p.add_argument("--length", type=int, default=200, help="ops chain length for --op-overhead (default: 200)")
    p.add_argument("--size", type=int, default=8, help="tensor side for --op-overhead (default: 8)")
    p.add_argument("--_memory-probe", nargs=2, metavar=("MODEL", "ENGINE"), help=argparse.SUPPRESS)
    p.add_argument("--_trap-child", nargs=2, type=int, metavar=("PARALLEL", "BLAS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in args.models + ([args.profile] if args.profile else []):
        if m not in MODELS:
            p.error(f"unknown model {m!r}; expected one of {', '.join(MODELS)}")
    try:
        args.threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        p.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if min(args.threads) < 1 or min(args.rounds, args.steps, args.length, args.size) < 1:
        p.error("--threads, --rounds, --steps, --length and --size must be at least 1")
    if args.warmup < 0 or args.memory_repeats < 0:
        p.error("--warmup and --memory-repeats must be at least 0")
    if args.lead_in is not None and args.lead_in < 0:
        p.error(f"--lead-in must be at least 0, got {args.lead_in}")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args._memory_probe:
        print(probe_memory(*args._memory_probe, args.threads[0]))
        return []
    if args._trap_child:
        print(json.dumps(trap_child(bool(args._trap_child[0]), args._trap_child[1], args.rounds)))
        return []
    if args.threading_trap:
        summary = threading_trap(args.rounds)
        if args.json:
            write_json(args.json, {"machine": machine_info(argv), "threading_trap": summary})
        return []
    if args.profile:
        prof = profile_model(args.profile, args.threads[0], args.rounds, args.steps, args.top)
        if args.json:
            write_json(args.json, {"machine": machine_info(argv), **prof})
        return []
    use_torch = not args.no_torch and torch_available()
    if args.op_overhead:
        if use_torch:
            import torch

            torch.set_num_threads(1)  # tiny tensors: threads only add noise
        rows = op_overhead(args.length, args.size, args.rounds * args.steps, use_torch)
        if args.json:
            write_json(args.json, {"machine": machine_info(argv), "op_overhead": rows})
        return []
    if not use_torch and not args.no_torch:
        print("bench: PyTorch is not importable here; timing minidl and the numpy floor only", file=sys.stderr)
    from minidl import kernels

    if kernels.enabled():
        kernels.warm_up(("float32",))  # compile or load every kernel before any clock starts
    info = machine_info(argv)
    print(
        f"minidl.bench: {info['cpu']}, {info['cores']} cores, load average {info['load_average']}; "
        f"numpy {info['numpy']}, numba {info['numba']}"
        + (f", torch {info['torch']}" if use_torch else "")
        + f"; numba kernels {'on' if kernels.enabled() else 'off (MINIDL_NUMBA=0)'}"
    )
    print(f"BLAS: {blas_summary(info)}")
    results = []
    for threads in args.threads:
        set_threads(threads)
        for name in args.models:
            r = run_model(name, threads, args, use_torch)
            if args.memory_repeats and sys.platform.startswith("linux"):
                engines = ["minidl"] + (["torch"] if use_torch else []) + (["numpy-floor"] if name == "mlp" else [])
                memory = measure_memory(name, engines, threads, args.memory_repeats)
                r["peak_step_bytes"], r["peak_step_bytes_all"] = memory["median"], memory["all"]
            results.append(r)
            print_table([r])
    print()
    print("summary: median step time; ratios of per-step pairs (engines interleaved): median [quartiles] (min-max)")
    print_table(results)
    info["load_average_end"] = load_average()
    if args.json:
        args_saved = {k: v for k, v in vars(args).items() if not k.startswith("_")}
        write_json(args.json, {"machine": info, "args": args_saved, "results": results})
        print(f"results written to {args.json}")
    return results


if __name__ == "__main__":
    drop_blas_overrides(sys.argv[1:])
    main()
