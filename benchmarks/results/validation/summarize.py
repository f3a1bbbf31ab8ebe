"""Median absolute error of the simulator's predictions per algorithm and rank count, per validate run.

    python benchmarks/results/validation/summarize.py benchmarks/results/validation/pinned/validate-*.json

Reads the rows ``python -m collectives.sim validate --json`` writes (measured and predicted
seconds per algorithm, p and size) and prints |predicted - measured| / measured, median over the
sizes, for each rank count and run; for rank counts above the profile's cores also the error of
the prediction from the one-rank-per-core models stretched by ranks per core ("shared"), and
where the run probed its launches' mode, the prediction from the calibration launches in that
mode ("mode").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from statistics import median


def errors(rows: list[dict], key: str) -> dict[tuple[str, int], float]:
    out: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        if key in r:
            out.setdefault((r["algorithm"], r["p"]), []).append(abs(r[key] - r["measured"]) / r["measured"])
    return {k: median(v) for k, v in out.items()}


def main(paths: list[str]) -> None:
    runs = [(Path(p).stem, json.loads(Path(p).read_text())) for p in paths]
    columns = []
    for name, report in runs:
        plain = errors(report["rows"], "predicted")
        extra = [("shared", errors(report["rows"], "predicted_core_share"))]
        extra.append(("mode", errors(report["rows"], "predicted_mode")))
        for p in sorted({p for _, p in plain}):
            columns.append((f"{name} p={p}", {a: e for (a, q), e in plain.items() if q == p}))
            for label, errs in extra:
                if any(q == p for _, q in errs):
                    columns.append((f"{name} p={p} {label}", {a: e for (a, q), e in errs.items() if q == p}))
    algorithms = sorted({a for _, col in columns for a in col})
    print("| algorithm | " + " | ".join(c for c, _ in columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for a in algorithms:
        print(f"| {a} | " + " | ".join(f"{col[a]:.0%}" if a in col else "-" for _, col in columns) + " |")
    for name, report in runs:
        print(f"{name}: load before {report.get('load_before')}, bind {report.get('bind')}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: summarize.py validate-*.json")
    main(sys.argv[1:])
