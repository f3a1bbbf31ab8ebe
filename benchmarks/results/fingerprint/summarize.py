"""Auto vs MPI's Allreduce from run.sh's JSON files: per tree, rank count and size, the median of
the launches' ratios (MPI's time / ours: above 1 is faster than MPI; the target "at most 1.5x MPI's
time" is a ratio of at least 0.67) and each launch's ratio, with the load the launches saw. On a
loaded machine the medians move with the load; "best" is the ratio of the fastest round of each
(over all rounds and launches), the nearest thing to a quiet machine's figure a loaded one gives.

    python benchmarks/results/fingerprint/summarize.py benchmarks/results/fingerprint/*.json
"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ratios: dict[tuple[str, int, int], list[float]] = defaultdict(list)
times: dict[tuple[str, int, int], list[tuple[float, float]]] = defaultdict(list)
best: dict[tuple[str, int, int, str], float] = defaultdict(lambda: float("inf"))
loads: dict[str, list[float]] = defaultdict(list)
for name in sys.argv[1:]:
    tree = Path(name).stem.split("-")[2]  # p2-small-new-1
    data = json.loads(Path(name).read_text())
    loads[tree] += [data["load_before"][0], data["load_after"][0]]
    for row in data["summary"]:
        ratios[tree, row["ranks"], row["bytes"]].append(row["ratio"])
    by_size = defaultdict(dict)
    for rec in data["records"]:
        by_size[rec["ranks"], rec["bytes"]][rec["algorithm"]] = rec["time_us"]
        key = (tree, rec["ranks"], rec["bytes"], rec["algorithm"])
        best[key] = min(best[key], *rec["times_us"])
    for (p, size), t in by_size.items():
        times[tree, p, size].append((t["MPI"], t["auto"]))
print("tree  p      size  ratio (median)  per launch            MPI us / auto us (medians)   best: MPI / auto = ratio")
for tree, p, size in sorted(ratios):
    r = ratios[tree, p, size]
    mpi = statistics.median(m for m, _ in times[tree, p, size])
    ours = statistics.median(a for _, a in times[tree, p, size])
    print(
        f"{tree:4} {p:2} {size:9}  {statistics.median(r):14.2f}  {' '.join(f'{x:.2f}' for x in r):20}  "
        f"{mpi:8.1f} / {ours:<8.1f}   {best[tree, p, size, 'MPI']:8.1f} / {best[tree, p, size, 'auto']:<8.1f}"
        f" = {best[tree, p, size, 'MPI'] / best[tree, p, size, 'auto']:.2f}"
    )
for tree, values in sorted(loads.items()):
    print(f"# {tree}: 1-minute load average before/after the launches: {min(values):.1f} .. {max(values):.1f}")
