"""Rebuild docs/performance.md's results table from committed ``--json`` runs of ``python -m minidl.bench``.

    python -m minidl.bench.tables benchmarks/results/minidl/before-1t.json benchmarks/results/minidl/after-1t.json
    python -m minidl.bench.tables --write docs/performance.md benchmarks/results/minidl/*.json

One row per model, thread count and file, with the load average at the run's start and end, the
median step times, each paired ratio as ``median [quartiles] (min-max)``, the peak step memory,
and a verdict against issue 16's engine targets: *met* when the upper quartile of the paired
ratios is within the target, *missed* when the lower quartile is above it, *unclear* otherwise
(the spread allows either). ``--write DOC`` replaces the text between the ``<!-- bench-table -->``
and ``<!-- /bench-table -->`` markers of DOC, so the docs never hold a number the JSON does not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from minidl.bench.report import ratio_text

# issue 16's engine targets: (ratio key, limit) per model; "memory" is peak step memory minidl / PyTorch
TARGETS: dict[str, list[tuple[str, float]]] = {
    "mlp": [("minidl/torch", 0.9), ("minidl/numpy-floor", 1.05)],
    "lenet": [("minidl/torch", 1.0), ("memory", 1.2)],
    "resnet-block": [("minidl/torch", 1.5)],
    "transformer": [("minidl/torch", 1.0)],
}
START, END = "<!-- bench-table -->", "<!-- /bench-table -->"


def verdict(r: dict[str, float] | None, limit: float) -> str:
    if r is None:
        return "-"
    if r["q3"] <= limit:
        return "met"
    return "missed" if r["q1"] > limit else "unclear"


def _memory(row: dict[str, Any]) -> tuple[str, float | None]:
    mem = row.get("peak_step_bytes") or {}
    a, b = mem.get("minidl"), mem.get("torch")
    if not (a and b):
        return "-", None
    return f"{a / 2**20:.1f} / {b / 2**20:.1f} MiB = {a / b:.2f}x", a / b


def rows(path: str) -> list[str]:
    """Markdown rows for one JSON file."""
    with open(path) as f:
        run = json.load(f)
    machine = run["machine"]
    load = machine.get("load_average") or [float("nan")]
    load_end = machine.get("load_average_end") or [float("nan")]
    out = []
    for r in run["results"]:
        ratios, ms = r["ratios"], r["median_step_ms"]
        mem_text, mem_ratio = _memory(r)
        verdicts = []
        for key, limit in TARGETS.get(r["model"], []):
            if key == "memory":
                if mem_ratio is not None:
                    verdicts.append(f"memory <= {limit}: {'met' if mem_ratio <= limit else 'missed'}")
            else:
                verdicts.append(f"{key.split('/')[1]} <= {limit}: {verdict(ratios.get(key), limit)}")
        torch_ms = f"{ms['torch']:.2f}" if "torch" in ms else "-"
        out.append(
            f"| {r['model']} | {r['threads']} | {os.path.basename(path)} | {load[0]:.1f}-{load_end[0]:.1f} "
            f"| {ms['minidl']:.2f} | {torch_ms} | {ratio_text(ratios.get('minidl/torch'))} "
            f"| {ratio_text(ratios.get('minidl/numpy-floor'))} | {mem_text} | {'; '.join(verdicts) or '-'} |"
        )
    return out


def table(paths: list[str]) -> str:
    head = (
        "| model | threads | run (JSON) | load avg start-end | minidl ms | PyTorch ms | minidl / PyTorch "
        "| minidl / numpy floor | peak step memory minidl / PyTorch | target: verdict |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    return "\n".join([head] + [row for p in paths for row in rows(p)])


def write(doc: str, text: str) -> None:
    with open(doc) as f:
        content = f.read()
    if START not in content or END not in content:
        raise SystemExit(f"tables: {doc} has no {START} ... {END} markers to replace")
    before, rest = content.split(START, 1)
    _, after = rest.split(END, 1)
    with open(doc, "w") as f:
        f.write(f"{before}{START}\n{text}\n{END}{after}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidl.bench.tables", description=__doc__.split("\n")[0])
    p.add_argument("json", nargs="+", help="files written by python -m minidl.bench --json")
    p.add_argument("--write", metavar="DOC", help="replace the table between the markers of this Markdown file")
    args = p.parse_args(argv)
    for path in args.json:
        if not os.path.isfile(path):
            p.error(f"no such file: {path}")
    try:
        text = table(args.json)
    except (KeyError, ValueError) as e:
        p.error(f"not a minidl.bench --json file ({e})")
    if args.write:
        write(args.write, text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
