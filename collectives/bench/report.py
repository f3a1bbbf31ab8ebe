"""``python -m collectives.bench.report RUN.json ... [--update BENCHMARKS.md]``: the benchmark tables from raw runs.

Every figure BENCHMARKS.md quotes about the collectives comes from ``collectives.bench --json`` files
committed in ``benchmarks/results/``; this script turns them into Markdown (printed, or written
between the ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` markers of ``--update FILE``), so
the tables can be regenerated and checked against the data. Ratios are recomputed from the raw
per-round times: MPI's time / the pre-declared choice's in the same round, median (min-max).
``auto``'s model is scored out of sample by :mod:`collectives.bench.fit`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def load_runs(paths: list[str]) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(paths):
        try:
            data = json.loads(Path(path).read_text())
            data["records"]
        except (OSError, ValueError, KeyError) as e:
            raise SystemExit(
                f"collectives.bench.report: {path}: not a 'collectives.bench --json' output ({e})"
            ) from None
        data["path"] = path
        runs.append(data)
    return runs


def size_label(n: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def paired(records: list[dict], a: str, b: str) -> list[float]:
    """Per round: time of ``a`` / time of ``b`` (> 1: b is faster)."""
    by = {r["algorithm"]: r["times_us"] for r in records}
    return [x / y for x, y in zip(by[a], by[b])]


def cell(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def groups(runs: list[dict]) -> dict[tuple, list[tuple[dict, dict[int, list[dict]]]]]:
    """(collective, type, redop, ranks) -> [(run, {bytes: records})] in file order."""
    out: dict[tuple, list] = defaultdict(list)
    for run in runs:
        tables: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for r in run["records"]:
            key = (r.get("collective", "allreduce"), r["type"], r["redop"], r["ranks"])
            tables[key][r["bytes"]].append(r)
        for key, rows in tables.items():
            out[key].append((run, rows))
    return out


def choice_of(run: dict, key: tuple) -> str:
    for s in run.get("summary", []):
        if isinstance(s, dict) and (s["collective"], s["type"], s["redop"], s["ranks"]) == key:
            return s["choice"]
    return "auto"


def launches_table(runs: list[dict]) -> list[str]:
    lines = ["| launch | ranks | date | load before -> after (1, 5, 15 min) | mismatch check | command |",
             "| --- | ---: | --- | --- | --- | --- |"]  # fmt: skip
    for run in runs:
        lines.append(
            f"| `{Path(run['path']).name}` | {run['ranks']} | {run.get('date', '-')} | {run.get('load_before')} -> "
            f"{run.get('load_after')} | {'on' if run.get('mismatch_check') else 'off'} | `{run.get('command', '?')}` |"
        )
    return lines


def comparison_table(key: tuple, launches: list[tuple[dict, dict[int, list[dict]]]]) -> list[str]:
    """Per size: MPI's and the choice's median time over launches, then per launch the choice's ratio to
    MPI and, labelled, the fastest algorithm known only after measuring."""
    coll, dtype, op, p = key
    choice = choice_of(launches[0][0], key)
    names = " | ".join(f"launch {i + 1}: {choice} vs MPI | launch {i + 1}: best after the fact" for i in
                       range(len(launches)))  # fmt: skip
    lines = [
        f"**{coll}, {dtype}, {op}, p = {p}** (pre-declared choice: `{choice}`; ratio = MPI's time / its time, "
        "median over paired rounds (min-max), > 1: faster than MPI)",
        "",
        f"| size | MPI us | {choice} us | {names} |",
        "| ---: | ---: | ---: |" + " ---: | ---: |" * len(launches),
    ]
    sizes = sorted({n for _, rows in launches for n in rows})
    for n in sizes:
        present = [(run, rows[n]) for run, rows in launches if n in rows]
        mpi = statistics.median(r["time_us"] for _, recs in present for r in recs if r["algorithm"] == "MPI")
        mine = [r["time_us"] for _, recs in present for r in recs if r["algorithm"] == choice]
        cells = []
        for _, rows in launches:
            recs = rows.get(n)
            if not recs or choice not in {r["algorithm"] for r in recs}:
                cells += ["-", "-"]
                continue
            ours = [r for r in recs if r["algorithm"] not in ("MPI", "auto")]
            best = min(ours, key=lambda r: r["time_us"])["algorithm"]
            cells += [cell(paired(recs, "MPI", choice)), f"{cell(paired(recs, 'MPI', best))} {best}"]
        mine_s = f"{statistics.median(mine):.1f}" if mine else "-"
        lines.append(f"| {size_label(n)} | {mpi:.1f} | {mine_s} | " + " | ".join(cells) + " |")
    wrong = sum(r["wrong"] or 0 for _, rows in launches for recs in rows.values() for r in recs)
    lines += ["", f"Wrong elements over these launches (every contender checked at every size): {wrong}.", ""]
    return lines


def markdown(runs: list[dict]) -> str:
    from collectives.bench.fit import out_of_sample_lines

    lines = [
        "Generated by `python -m collectives.bench.report benchmarks/results/*.json --update BENCHMARKS.md`"
        " from the raw runs in `benchmarks/results/`; do not edit by hand.",
        "",
    ]
    machines = {(r["machine"]["host"], r["machine"]["cpu"], r["machine"]["cores"]) for r in runs if "machine" in r}
    versions = {tuple(sorted((k, v) for k, v in r["versions"].items() if k != "collectives")) for r in runs
                if "versions" in r}  # fmt: skip
    for host, cpu, cores in sorted(machines):
        lines.append(f"Machine: {host}, {cpu}, {cores} cores, shared with other jobs (see the load column).")
    for v in sorted(versions):
        lines.append("Versions: " + ", ".join(f"{k} {val}" for k, val in v) + ".")
    lines += ["", *launches_table(runs), ""]
    for key, launches in sorted(groups(runs).items(), key=lambda kv: (kv[0][0] != "allreduce", kv[0])):
        lines += comparison_table(key, launches)
    allreduce = [r for r in runs if any(x.get("collective", "allreduce") == "allreduce" for x in r["records"])]
    lines += ["**`auto`'s model, scored out of sample** (`python -m collectives.bench.fit`, leave one launch out):", ""]
    lines += ["    " + line for line in out_of_sample_lines(allreduce)]
    return "\n".join(lines) + "\n"


def update(path: str, text: str) -> None:
    doc = Path(path).read_text()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"collectives.bench.report: {path} has no {BEGIN} ... {END} markers")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    Path(path).write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m collectives.bench.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="JSON files written by 'python -m collectives.bench --json FILE'")
    ap.add_argument("--update", metavar="FILE", help="replace the text between the markers of FILE")
    a = ap.parse_args(argv)
    text = markdown(load_runs(a.runs))
    if a.update:
        update(a.update, text)
        print(f"updated {a.update}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
