"""``python -m collectives.sim``: check algorithms, predict their time, sweep, calibrate, validate.

Run with ``--help`` (or ``SUBCOMMAND --help``) for the options; docs/simulator.md has examples.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from collectives.sim.topology import TOPOLOGY_HELP

EPILOG = """\
examples:
  python -m collectives.sim check ring                 # real data, symbolic proof, counters, formula
  python -m collectives.sim run ring --ranks 16 --size 256M --timeline ring.png
  python -m collectives.sim run ring --ranks 8 --size 1M --trace ring.json   # open in ui.perfetto.dev
  python -m collectives.sim run all --ranks 64 --size 1M --topology torus:8x8 --link ib-hdr
  python -m collectives.sim sweep --ranks 2..4096 --sizes 1K..1G --topology fattree:k=16,oversub=2 --plot map.png
  python -m collectives.sim calibrate --out profile.json      # launches mpiexec -n 2, 3, 4
  python -m collectives.sim validate --profile profile.json
  python -m collectives.sim presets                     # link and device presets, with sources
  python -m collectives.sim numerics all --ranks 4,64,1024 --dtype float32 --plot err.png
  python -m collectives.sim numerics ring --ranks 8 --draw 0   # the reduction tree of element 0
"""


def _algorithms(text: str) -> list[str]:
    """The registered names in ``text`` ("all": every one); the registry's resolve says what is wrong."""
    from collectives.algorithms import algorithm_names, resolve

    if text in ("all", ""):
        return sorted(algorithm_names(auto=False))
    return [resolve(a.strip(), auto=False) for a in text.split(",") if a.strip()]


def _machine_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("machine (defaults: textbook model, fully connected, ib-edr links, cpu device)")
    g.add_argument(
        "--model",
        default="textbook",
        choices=["textbook", "abg", "loggp"],
        help="textbook: alpha-beta-gamma, one port per rank, messages start when both sides post (closed forms' "
        "model); abg: any number of messages at once; loggp: with --o and --g",
    )
    g.add_argument("--topology", default="full", help="network shape, see below (default full)")
    g.add_argument(
        "--link",
        help="network link: a preset (see 'presets'; default ib-edr) or BANDWIDTH,LATENCY such as 10Gbps,20us "
        "(b = bits, B = bytes; the latency of a message end to end), as --link means in every command",
    )
    g.add_argument("--intra", help="link inside a node for hier: topologies, as --link (default nvlink4)")
    g.add_argument("--device", help="device preset for reductions and copies: cpu, a100, h100 (default cpu)")
    g.add_argument("--alpha", help="per-message latency, e.g. 2us (overrides the preset)")
    g.add_argument("--latency", help="per-hop link latency, e.g. 100ns")
    g.add_argument("--bandwidth", help="link bandwidth per direction, e.g. 25GB/s or 200Gbps")
    g.add_argument("--gamma", help="reduction speed (4GB/s) or seconds per byte")
    g.add_argument("--delta", help="copy speed (8GB/s) or seconds per byte")
    g.add_argument("--o", help="LogGP overhead per message, e.g. 1us")
    g.add_argument("--g", help="LogGP gap between messages, e.g. 0.5us")
    g.add_argument("--profile", help="a profile written by 'calibrate' (alpha, beta, gamma of this machine)")


def _machine(args: argparse.Namespace) -> Any:
    from collectives.sim.machine import machine_from_options

    return machine_from_options(
        model=args.model,
        topology=args.topology,
        link=args.link,
        intra=args.intra,
        device=args.device,
        alpha=args.alpha,
        latency=args.latency,
        bandwidth=args.bandwidth,
        gamma=args.gamma,
        delta=args.delta,
        o=args.o,
        g=args.g,
        profile=args.profile,
    )


# ------------------------------------------------------------------------------------ check
def cmd_check(args: argparse.Namespace) -> int:
    from collectives.sim.harness import SYMBOLIC_RANKS, check
    from collectives.sim.units import parse_ranks

    ok = True
    for name in _algorithms(args.algorithm):
        kwargs: dict[str, Any] = {"seeds": args.seeds, "cost": not args.no_cost, "verbose": False}
        if args.ranks:
            kwargs["ranks"] = parse_ranks(args.ranks)
        if args.large_ranks is not None:
            kwargs["large_ranks"] = parse_ranks(args.large_ranks) if args.large_ranks else ()
        symbolic = list(SYMBOLIC_RANKS)
        if args.symbolic_ranks:
            symbolic = parse_ranks(args.symbolic_ranks)
        kwargs["symbolic_ranks"] = symbolic
        if args.quick:
            kwargs.update(ranks=(1, 2, 3, 4, 5, 8), large_ranks=(), symbolic_ranks=(1, 2, 3, 4, 5, 7, 8, 16, 33))
        report = check(name, **kwargs)
        print(report, flush=True)
        ok &= report.ok
    return 0 if ok else 1


# -------------------------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    from collectives.algorithms import ALGORITHMS
    from collectives.sim.simulate import simulate
    from collectives.sim.sweep import formula_time
    from collectives.sim.units import format_bandwidth, format_size, format_time, parse_ranks, parse_size

    names = _algorithms(args.algorithm)  # before any output: a bad name is the only line printed
    if args.trace and args.method == "formula":
        raise ValueError("run: --trace needs the simulation (--method simulate): a closed form has no events")
    machine = _machine(args)
    nbytes = parse_size(args.size)
    itemsize = 4 if args.dtype == "float32" else __import__("numpy").dtype(args.dtype).itemsize
    nbytes -= nbytes % itemsize
    status = 0
    for p in parse_ranks(args.ranks):
        model, topology = machine.build(p)
        print(f"{p} ranks, {format_size(nbytes)}B per rank ({args.dtype}); {machine.describe(p)}")
        if topology is not None:
            print(f"  network: {topology.describe()}")
        rows = []
        for name in names:
            spec = ALGORITHMS[name]
            formula = formula_time(spec, p, nbytes, itemsize, machine)
            if args.method == "formula":
                rows.append((name, None, formula))
                continue
            start = time.perf_counter()
            res = simulate(
                spec,
                p,
                nbytes,
                model=model,
                topology=topology,
                dtype=args.dtype,
                timeline=bool(args.timeline or args.trace),
                engine=args.engine,
            )
            wall = time.perf_counter() - start
            rows.append((name, res, formula))
            if args.verbose or len(names) == 1:
                declared = spec.cost(p, nbytes, itemsize)
                b = res.busiest()
                print(
                    f"  {name}: predicted {format_time(res.time)} (closed form {format_time(formula)}, "
                    f"{(res.time - formula) / formula:+.1%}); algbw {format_bandwidth(res.algbw)}, "
                    f"busbw {format_bandwidth(res.busbw)}"
                )
                print(
                    f"    busiest rank: {b['messages_sent']} messages (declared {declared.messages_per_rank}), "
                    f"{format_size(b['bytes_sent'])}B sent (declared {format_size(declared.bytes_sent_per_rank)}B, "
                    f"lower bound {format_size(2 * (p - 1) / p * nbytes)}B), {format_size(b['bytes_reduced'])}B reduced"
                )
                if args.per_rank:
                    print(
                        f"    {'rank':>6}{'msgs out':>10}{'bytes out':>12}{'msgs in':>9}{'bytes in':>12}{'reduced':>10}"
                    )
                    for r in range(p):
                        print(
                            f"    {r:>6}{res.sent_msgs[r]:>10}{format_size(res.sent_bytes[r]):>12}{res.recv_msgs[r]:>9}"
                            f"{format_size(res.recv_bytes[r]):>12}{format_size(res.reduce_bytes[r]):>10}"
                        )
                busiest_links = sorted(res.links, key=lambda link: -link[3])[: args.links]
                for lname, msgs, lbytes, busy in busiest_links:
                    util = busy / res.time if res.time else 0.0
                    print(f"    link {lname}: {msgs} messages, {format_size(lbytes)}B, busy {util:.0%} of the time")
                print(
                    f"    simulated {res.messages} messages ({res.steps} steps) in {wall:.2f} s "
                    f"({res.cpu:.2f} s of CPU), {res.engine} engine"
                )
            if args.timeline:
                from collectives.sim.timeline import plot, text_summary

                path = Path(args.timeline)
                if len(rows) > 1 or len(parse_ranks(args.ranks)) > 1:
                    path = path.with_name(f"{path.stem}-{name}-p{p}{path.suffix}")
                plot(res, path)
                print(f"    timeline: {path}  ({text_summary(res)})")
            if args.trace:
                from collectives.sim.trace import write_sim_trace

                path = Path(args.trace)
                if len(names) > 1 or len(parse_ranks(args.ranks)) > 1:
                    path = path.with_name(f"{path.stem}-{name}-p{p}{path.suffix}")
                path, what = write_sim_trace(res, path)
                print(f"    trace: {path}  ({what}; open in https://ui.perfetto.dev or chrome://tracing)")
        if args.method == "formula" or len(rows) > 1:
            print(f"  {'algorithm':<20}{'predicted':>13} {'closed form':>13} {'algbw':>14} {'busbw':>14}")
            for name, res, formula in sorted(rows, key=lambda r: r[1].time if r[1] else r[2]):
                t = res.time if res else formula
                algbw = nbytes / t if t else float("inf")
                busbw = algbw * (2 * (p - 1) / p if p > 1 else 0)
                shown = format_time(res.time) if res else "-"
                print(
                    f"  {name:<20}{shown:>13} {format_time(formula):>13} "
                    f"{format_bandwidth(algbw):>14} {format_bandwidth(busbw):>14}"
                )
    return status


# ------------------------------------------------------------------------------------ sweep
def cmd_sweep(args: argparse.Namespace) -> int:
    from collectives.sim.sweep import crossovers, explain, plot, run_sweep, table
    from collectives.sim.units import parse_ranks, parse_sizes

    machine = _machine(args)
    ranks, sizes = parse_ranks(args.ranks), parse_sizes(args.sizes)
    names = _algorithms(args.algorithms)
    progress = (lambda msg: print("  " + msg, file=sys.stderr, flush=True)) if args.verbose else None
    result = run_sweep(names, ranks, sizes, machine, method=args.method, budget=args.budget, progress=progress)
    print(f"sweep on {machine.describe()}, topology {args.topology}")
    print(table(result))
    print("\ncrossovers (smallest size first):")
    print(crossovers(result))
    print("\nwhy, at each rank count's crossovers:")
    for p in ranks:
        previous = None
        for n in result.sizes:
            w = result.cell(p, n).winner
            if w != previous:
                print("  " + explain(result, p, n, machine))
                previous = w
    print(f"\n{len(ranks) * len(result.sizes) * len(names)} predictions in {result.wall:.1f} s")
    if args.plot:
        print(f"crossover map: {plot(result, args.plot)}")
    return 0


# -------------------------------------------------------------------------- calibrate/validate
def cmd_calibrate(args: argparse.Namespace) -> int:
    from collectives.sim import calibrate as cal
    from collectives.sim.units import parse_ranks

    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 3)
    if rounds < 1:
        raise ValueError(f"calibrate: --rounds must be at least 1, got {rounds}")
    if args.worker:
        cal.calibrate_worker(args.out, args.quick, rounds)
        return 0
    if cal.under_mpiexec():
        from mpi4py import MPI

        size = MPI.COMM_WORLD.Get_size()
        part = Path(args.out).with_suffix(".part.json")
        load_before = cal.load_average()  # already includes this job's ranks (they are running)
        cal.calibrate_worker(str(part), args.quick, rounds)
        if MPI.COMM_WORLD.Get_rank() == 0:
            import json

            profile = cal.merge_profile([json.loads(part.read_text())], args.max_spread)
            profile["load_before"] = load_before
            part.unlink()
            if args.strict and not profile["trusted"]:
                print(cal.describe_profile(profile))
                print("calibrate: --strict: no profile written", file=sys.stderr)
                return 3
            Path(args.out).write_text(json.dumps(profile, indent=1))
            print(f"measured on {size} ranks, {rounds} rounds; wrote {args.out}")
            print(cal.describe_profile(profile))
        return 0
    nprocs = parse_ranks(args.nprocs)
    launches = "; ".join(" ".join(cal.launch_command(p, args.bind)[1:]) for p in nprocs)
    print(f"calibrating with mpiexec {launches}, {rounds} launches each ...", flush=True)
    try:
        profile = cal.calibrate(
            nprocs,
            args.out,
            quick=args.quick,
            rounds=rounds,
            max_spread=args.max_spread,
            strict=args.strict,
            bind=args.bind,
        )
    except RuntimeError as e:
        if not str(e).startswith("calibrate: the measurements disagree"):
            raise
        print(e, file=sys.stderr)
        return 3
    print(f"wrote {args.out}")
    print(cal.describe_profile(profile))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    import json

    from collectives.sim import calibrate as cal
    from collectives.sim.units import parse_ranks, parse_sizes

    sizes = parse_sizes(args.sizes) if args.sizes else cal.VALIDATE_SIZES
    sizes = [s - s % 8 for s in sizes]
    if args.worker:
        cal.validate_worker(args.out, _algorithms(args.algorithms), sizes, args.repeats)
        return 0
    if not Path(args.profile).exists():
        raise ValueError(f"validate: no profile at {args.profile}; run 'python -m collectives.sim calibrate' first")
    report = cal.validate(
        args.profile, parse_ranks(args.nprocs), _algorithms(args.algorithms), sizes, args.repeats, bind=args.bind
    )
    print(cal.validation_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    worst = max(report["median_abs_error"].values(), default=0.0)
    return 0 if worst <= args.target else 1


# --------------------------------------------------------------------------------- numerics
def cmd_numerics(args: argparse.Namespace) -> int:
    import json

    from collectives.sim import numerics
    from collectives.sim.units import parse_ranks

    names, ranks = _algorithms(args.algorithm), parse_ranks(args.ranks)
    dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()]
    if args.draw is not None:
        for name in names:
            for p in ranks:
                trees = numerics.reduction_trees(name, p, args.elements or max(p, 8), dtypes[0])
                if not 0 <= args.draw < trees.n:
                    raise ValueError(f"numerics: --draw {args.draw}: the run has elements 0..{trees.n - 1}")
                depths = trees.leaf_depths(args.draw)
                print(f"{name}, {p} ranks, element {args.draw}: {trees.expression(args.draw)}")
                print(f"  additions per rank's input: {', '.join(f'x{r}: {d}' for r, d in sorted(depths.items()))}")
                print("  " + trees.drawing(args.draw).replace("\n", "\n  "))
        return 0
    rows = []
    for dtype in dtypes:
        for name in names:
            for p in ranks:
                rows.append(numerics.measure(name, p, dtype, args.elements, args.trials, args.seed))
                if args.verbose:
                    print(f"  {name} p={p} {dtype} done", file=sys.stderr, flush=True)
    print(numerics.table(rows))
    broken = [r for r in rows if max(r.bound_ratio.values()) > 1]
    for r in broken:
        print(f"BOUND EXCEEDED: {r.algorithm} p={r.p} {r.dtype}: {r.bound_ratio}")
    if args.plot:
        print(f"plot: {numerics.plot(rows, args.plot)}")
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], indent=1))
        print(f"wrote {args.json}")
    return 1 if broken else 0


def cmd_presets(args: argparse.Namespace) -> int:
    from collectives.sim.presets import presets_table

    print(presets_table())
    print("\ntopologies:\n" + TOPOLOGY_HELP)
    return 0


# ------------------------------------------------------------------------------------ parser
def _command(sub: Any, name: str, func: Any, help: str, description: str | None = None, **kw: Any) -> Any:
    """A subcommand running ``func``; ``machine=True`` adds the machine options and the topology list."""
    machine = kw.pop("machine", False)
    if machine:
        kw.update(
            epilog="topologies (--topology):\n" + TOPOLOGY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
        )
    p = sub.add_parser(name, help=help, description=description or help, **kw)
    p.set_defaults(func=func)
    if machine:
        _machine_options(p)
    return p


def _launch_options(p: argparse.ArgumentParser, what: str) -> None:
    """The options of a subcommand that launches itself under mpiexec for each rank count."""
    p.add_argument("--nprocs", default="2,3,4", help=f"rank counts to {what} (default 2,3,4)")
    p.add_argument(
        "--bind",
        default="auto",
        help="pin the ranks: mpiexec --bind-to BIND (core, hwthread, ...; none: leave it to the OS; default auto: "
        "core while there is a core per rank, else none)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m collectives.sim",
        description="Run allreduce algorithms on virtual ranks: check them, predict their time, choose between them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(
        sub,
        "check",
        cmd_check,
        "the correctness harness: real data, symbolic proof, counters vs cost, time vs formula",
        "Run an algorithm on real data against numpy (random delivery orders), prove it "
        "symbolically (every rank ends with every rank's data exactly once), compare its counters with the "
        "declared Cost and its simulated time with the closed form. Exit status 1 if anything fails.",
    )
    p.add_argument("algorithm", nargs="?", default="all", help="name(s), comma separated, or 'all' (default)")
    p.add_argument("--ranks", help="rank counts for the real-data runs, e.g. 1..16:+1 or 2,3,5")
    p.add_argument("--large-ranks", help="extra large rank counts for real data (default 64,256; '' for none)")
    p.add_argument("--symbolic-ranks", help="rank counts for the symbolic proof, e.g. 2..4096")
    p.add_argument("--seeds", type=int, default=2, help="delivery orders per real-data case (default 2)")
    p.add_argument("--no-cost", action="store_true", help="skip counters and time vs the closed form")
    p.add_argument("--quick", action="store_true", help="small rank counts only (a few seconds per algorithm)")

    p = _command(
        sub,
        "run",
        cmd_run,
        "predict the time of one allreduce: time, algbw, busbw, counters, links, timeline",
        "Simulate an allreduce message by message (no data) and report the predicted time, "
        "nccl-tests' algbw and busbw, the closed form, per-rank and per-link counters, and optionally a timeline.",
        machine=True,
    )
    p.add_argument("algorithm", help="name(s), comma separated, or 'all'")
    p.add_argument("--ranks", required=True, help="rank count(s), e.g. 64 or 2..1024")
    p.add_argument("--size", required=True, help="bytes per rank, e.g. 64M")
    p.add_argument("--dtype", default="float32", help="element type (default float32)")
    p.add_argument("--method", default="simulate", choices=["simulate", "formula"], help="formula: closed forms only")
    p.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "fast", "reference"],
        help="fast: record the schedule once, time it with the compiled loop (same numbers); reference: the "
        "generator-driven scheduler; auto (default): fast where it applies, else the reference (and it says why)",
    )
    p.add_argument("--timeline", help="write a Gantt chart (.png or .svg)")
    p.add_argument(
        "--trace",
        help="write a Chrome trace (.json) for Perfetto or chrome://tracing: a track per rank, every message a slice "
        "(more than 64 ranks: an even sample of them)",
    )
    p.add_argument("--links", type=int, default=3, help="busiest links to list (default 3)")
    p.add_argument("--per-rank", action="store_true", help="print every rank's counters")
    p.add_argument("-v", "--verbose", action="store_true", help="details for every algorithm")

    p = _command(
        sub,
        "sweep",
        cmd_sweep,
        "which algorithm wins where, over ranks x sizes, and the crossover map",
        "Predict every algorithm over a grid of rank counts and sizes; print the winner per cell, "
        "the crossovers per rank count and why, and plot the crossover map. A cell is simulated message by "
        "message when all its algorithms fit --budget messages, else compared by closed forms (marked *).",
        machine=True,
    )
    p.add_argument("--ranks", default="2..4096", help="rank counts (default 2..4096, powers of two)")
    p.add_argument("--sizes", default="1K..1G:x4", help="bytes per rank (default 1K..1G:x4)")
    p.add_argument("--algorithms", default="all", help="names, comma separated, or 'all'")
    p.add_argument("--method", default="auto", choices=["auto", "simulate", "formula"])
    p.add_argument(
        "--budget", type=int, default=100_000, help="messages per simulation before a cell uses closed forms (100000)"
    )
    p.add_argument("--plot", help="write the crossover map (.png or .svg)")
    p.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")

    p = _command(
        sub,
        "calibrate",
        cmd_calibrate,
        "measure alpha, beta, gamma on this machine and write a profile (uses mpiexec)",
        "Measure alpha and beta (ring exchanges through the project's transport) and gamma, delta "
        "(numpy reductions and copies on all ranks at once), per rank count, --rounds times, and write a JSON "
        "profile of the rounds' medians with the spread of every parameter; warn loudly (--strict: refuse) when "
        "the rounds disagree by more than --max-spread or split into a slow and a fast mode. Run it plainly (it "
        "launches mpiexec -n for each of --nprocs, once per round, pinning ranks to cores while there are cores "
        "enough) or under your own mpiexec (it measures that rank count, every round in that one launch).",
    )
    p.add_argument("--out", default="profile.json", help="where to write the profile (default profile.json)")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (and 2 rounds unless --rounds)")
    p.add_argument(
        "--rounds",
        type=int,
        help="independent measurements per rank count, each a launch of its own, combined by their median (default 3)",
    )
    p.add_argument(
        "--max-spread",
        type=float,
        default=0.25,
        help="largest (max - min) / median of alpha, beta, gamma, delta over the rounds that is trusted (0.25)",
    )
    p.add_argument("--strict", action="store_true", help="refuse (exit status 3, no profile) when the spread is larger")
    _launch_options(p, "measure")

    p = _command(
        sub,
        "validate",
        cmd_validate,
        "run every algorithm for real at p = 2, 3, 4 and compare with the profile's predictions",
        "Time each algorithm for real (mpiexec -n p for each --nprocs) over --sizes, interleaved, "
        "and compare the medians with the simulator's predictions from --profile. Prints every case and the "
        "median absolute error per algorithm; exit status 1 if one exceeds --target.",
    )
    p.add_argument("--profile", default="profile.json", help="profile from 'calibrate' (default profile.json)")
    p.add_argument("--algorithms", default="all")
    p.add_argument("--sizes", help="bytes per rank (default 1K,16K,256K,1M,4M,16M,64M)")
    p.add_argument("--repeats", type=int, default=15, help="timed repetitions per case (default 15)")
    p.add_argument("--target", type=float, default=0.20, help="largest acceptable median error (default 0.20)")
    p.add_argument("--json", help="also write the rows and errors as JSON")
    p.add_argument("--out", help=argparse.SUPPRESS)
    _launch_options(p, "time")

    p = _command(
        sub,
        "numerics",
        cmd_numerics,
        "the summation order each algorithm gives every element, its error bound and the measured error",
        "Run each algorithm on virtual ranks recording, for every output element, the tree of additions that "
        "makes it; bound the rounding error from the tree's depths (Higham: sum_j gamma(d_j)|x_j|) and measure "
        "the error of that order on random, mixed-magnitude and cancelling data against the exactly rounded sum "
        "(math.fsum). Exit status 1 if a measured error exceeds its bound.",
    )
    p.add_argument("algorithm", nargs="?", default="all", help="name(s), comma separated, or 'all' (default)")
    p.add_argument("--ranks", default="2..64", help="rank counts (default 2..64, powers of two)")
    p.add_argument("--dtype", default="float32", help="float32, float64 or both comma separated (default float32)")
    p.add_argument("--elements", type=int, help="elements per rank (default max(p, 8): every chunk)")
    p.add_argument("--trials", type=int, default=8, help="data sets per kind (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--draw", type=int, metavar="ELEMENT", help="print the reduction tree of this element instead")
    p.add_argument("--plot", help="write error vs ranks per algorithm (.png or .svg)")
    p.add_argument("--json", help="also write the rows as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")

    _command(sub, "presets", cmd_presets, "list link and device presets with their sources, and the topologies")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError) as e:
        print(f"python -m collectives.sim: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
