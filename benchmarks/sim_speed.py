"""How fast the simulator runs big collectives message by message: the reference scheduler vs the fast engine.

    python benchmarks/sim_speed.py [--cases ring:1024:64M,double_tree:4096:64M,rabenseifner:4096:64M]
                                   [--repeats 1] [--no-reference] [--out benchmarks/results/sim_speed]
                                   [--prefix sim_speed]
    python benchmarks/sim_speed.py --report FILE.json ...   # the docs' table, from committed raw runs

For each case (algorithm:ranks:bytes per rank, the default machine of ``python -m collectives.sim
run``) it runs ``simulate`` with ``engine="reference"`` (the generator-driven scheduler) and
``engine="fast"`` (the schedule recorded once, timed by the compiled loop), alternating which
goes first in each repeat, and reports CPU seconds (``time.process_time``, which a shared
machine disturbs less than wall time; the raw JSON splits it into user and system time, the
latter mostly first touches of fresh memory, and counts the page faults), wall seconds, and
messages per CPU second; for the fast engine also how the CPU splits between recording the
schedule and replaying it. It checks that
both give the same predicted time and finish times (exit status 1 otherwise), and writes the raw
numbers with the machine, its load before and after, the versions and the command to
``--out``/<prefix>-<date>.json. The first fast run of a process loads (or compiles) the numba
loop: that cost is measured once apart ("warm-up") and left out of the repeats.

``--report`` prints one markdown row per case and raw file (every run's CPU seconds, their
median, messages per CPU second at the median, and the load), the table docs/simulator.md quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectives.bench.runinfo import _cpu_model, git_commit, load_average
from collectives.sim import simulate
from collectives.sim.units import parse_size

DEFAULT_CASES = "ring:1024:64M,double_tree:4096:64M,rabenseifner:4096:64M"


def parse_case(text: str) -> tuple[str, int, int]:
    try:
        name, ranks, size = text.split(":")
        return name, int(ranks), parse_size(size)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"case {text!r}: expected ALGORITHM:RANKS:BYTES such as ring:1024:64M") from e


def run_once(name: str, p: int, nbytes: int, engine: str) -> dict:
    """One simulation; CPU and wall seconds measured around the whole call."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall, cpu = time.perf_counter(), time.process_time()
    result = simulate(name, p, nbytes, engine=engine)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "engine": result.engine,
        "cpu_s": cpu,
        "user_s": after.ru_utime - before.ru_utime,
        "sys_s": after.ru_stime - before.ru_stime,
        "page_faults": after.ru_minflt - before.ru_minflt,
        "wall_s": wall,
        "messages": result.messages,
        "messages_per_cpu_s": result.messages / cpu if cpu else None,
        "predicted_s": result.time,
        "finish": result.finish,
    }


def fast_split(name: str, p: int, nbytes: int) -> dict:
    """The fast engine's CPU split: recording the schedule, then replaying it."""
    import numpy as np

    from collectives.algorithms import ALGORITHMS
    from collectives.ops import get_op
    from collectives.sim.machine import DEFAULT_MACHINE
    from collectives.sim.record import record
    from collectives.sim.replay import replay

    cpu = time.process_time()
    schedule = record(ALGORITHMS[name].run, p, nbytes // 4, np.float32, get_op("sum"))
    recorded = time.process_time() - cpu
    model, topology = DEFAULT_MACHINE.build(p)
    cpu = time.process_time()
    replay(schedule, model, topology)
    return {"record_cpu_s": recorded, "replay_cpu_s": time.process_time() - cpu}


def report(paths: list[str]) -> None:
    """The docs' table: per raw file and case, the fast (and reference) engine's CPU seconds of every run."""
    print(
        "| run (JSON) | load start-end | case (64 MiB per rank unless said) | messages | fast CPU s (median) "
        "| fast messages per CPU s | reference CPU s |"
    )
    print("| --- | --- | --- | ---: | --- | ---: | --- |")
    for path in paths:
        info = json.loads(Path(path).read_text())
        load = f"{info['load_before'][0]:.1f}-{info['load_after'][0]:.1f}" if info.get("load_after") else "-"
        for case in info["cases"]:
            fast = [r["cpu_s"] for r in case["runs"]["fast"]]
            ref = [r["cpu_s"] for r in case["runs"].get("reference", [])]
            messages = case["runs"]["fast"][0]["messages"]
            size = "" if case["bytes"] == 64 << 20 else f", {case['bytes']} B"
            print(
                f"| {Path(path).parent.name}/{Path(path).name} | {load} | {case['algorithm']}, {case['ranks']} ranks"
                f"{size} | {messages:,} | {', '.join(f'{c:.2f}' for c in fast)} ({statistics.median(fast):.2f}) "
                f"| {messages / statistics.median(fast):,.0f} | {', '.join(f'{c:.1f}' for c in ref) or '-'} |"
            )


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--report"]:
        if len(argv) < 2:
            sys.exit("sim_speed.py --report: give one or more raw JSON files")
        report(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=DEFAULT_CASES, help=f"comma separated (default {DEFAULT_CASES})")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each engine per case (default 1)")
    parser.add_argument("--no-reference", action="store_true", help="time the fast engine only")
    parser.add_argument("--out", default="benchmarks/results/sim_speed", help="directory for the raw JSON")
    parser.add_argument("--prefix", default="sim_speed", help="the raw JSON's name before its date (default sim_speed)")
    args = parser.parse_args(argv)
    cases = [parse_case(c) for c in args.cases.split(",") if c]
    engines = ["fast"] if args.no_reference else ["reference", "fast"]
    info = {
        "machine": {"host": platform.node(), "cpu": _cpu_model(), "cores": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_before": load_average(),
        "versions": {"python": platform.python_version(), "collectives": git_commit()},
        "command": " ".join(["python", "benchmarks/sim_speed.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    cpu = time.process_time()
    simulate("ring", 4, 1 << 10, engine="fast")  # loads (or compiles) the compiled loop
    info["warm_up_cpu_s"] = time.process_time() - cpu
    print(f"load {info['load_before']}; fast engine warm-up {info['warm_up_cpu_s']:.2f} s of CPU")
    rows, status = [], 0
    for name, p, nbytes in cases:
        runs: dict[str, list[dict]] = {e: [] for e in engines}
        for k in range(args.repeats):
            for engine in engines if k % 2 == 0 else engines[::-1]:  # alternate which engine goes first
                runs[engine].append(run_once(name, p, nbytes, engine))
        split = fast_split(name, p, nbytes)
        row = {"algorithm": name, "ranks": p, "bytes": nbytes, "runs": runs, "fast_split": split}
        for engine, got in runs.items():
            cpus = [r["cpu_s"] for r in got]
            walls = ", ".join(f"{r['wall_s']:.2f}" for r in got)
            row[f"{engine}_cpu_s_median"] = statistics.median(cpus)
            print(
                f"{name} p={p} {nbytes >> 20} MiB, {engine:>9}: {got[0]['messages']} messages, CPU "
                f"{', '.join(f'{c:.2f}' for c in cpus)} s (wall {walls} s), "
                f"{got[0]['messages'] / statistics.median(cpus):,.0f} messages per CPU second"
            )
        print(
            f"    fast engine split: record {split['record_cpu_s']:.2f} s, replay {split['replay_cpu_s']:.2f} s of CPU"
        )
        if "reference" in runs:
            ref, fast = runs["reference"][0], runs["fast"][0]
            same = ref["predicted_s"] == fast["predicted_s"] and ref["finish"] == fast["finish"]
            row["same_result"] = same
            row["cpu_ratio_reference_over_fast"] = [
                r["cpu_s"] / f["cpu_s"] for r, f in zip(runs["reference"], runs["fast"])
            ]
            print(
                f"    reference / fast CPU: {', '.join(f'{x:.1f}x' for x in row['cpu_ratio_reference_over_fast'])}; "
                f"same predicted time and finish times: {same}"
            )
            status |= not same
        for got in runs.values():
            for r in got:
                del r["finish"]  # thousands of numbers; the comparison above is what matters
        rows.append(row)
    info["load_after"] = load_average()
    info["cases"] = rows
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.prefix}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(info, indent=1))
    print(f"load after {info['load_after']}; wrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
