"""MPI's time / ours per contender, from ``benchmarks/wait_bench.py --json`` runs, one line per launch.

python benchmarks/results/busbw16m/summarize_wait.py benchmarks/results/busbw16m/wait-*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(paths: list[str]) -> None:
    runs = [(Path(p).stem, json.loads(Path(p).read_text())) for p in paths]
    names = sorted({k for _, r in runs for k in r["mpi_over_ours_median"]})
    print("| launch | load | " + " | ".join(names) + " |")
    print("| --- | --- |" + " --- |" * len(names))
    for stem, r in runs:
        ratios = r["mpi_over_ours_median"]
        cells = " | ".join(f"{ratios[n]:.2f}" if n in ratios else "-" for n in names)
        print(f"| {stem} | {r['load_before'][0]:g} | {cells} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: summarize_wait.py wait-*.json")
    main(sys.argv[1:])
