"""``--bucket-mb auto`` against fixed bucket sizes: the trainer under mpiexec, launches interleaved.

Each repeat launches the trainer once per bucket size, in turn (so load changes hit every size
alike), with ``--metrics``; per launch it reports the median step time, allreduce time and exposed
communication over the steps after the first, and for ``auto`` the chosen size and the predicted
figures. Writes the raw rows, the command and the load average to ``--out``.

    python benchmarks/autobucket_bench.py --ranks 2 --repeats 3 --out benchmarks/results/autobucket/run.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TRAIN = ["--dataset", "synthetic-images", "--model", "resnet", "--train-size", "1024", "--epochs", "1", "--no-progress"]
CHOSE = re.compile(
    r"--bucket-mb auto chose ([0-9.e+-]+) MiB \((\d+) buckets?\); per step, predicted: allreduce ([0-9.]+) ms, "
    r"exposed ([0-9.]+) ms"
)


def launch(ranks: int, link: str, bucket: str, metrics: Path, timeout: float) -> dict:
    cmd = ["mpiexec", "-n", str(ranks), sys.executable, "-m", "minidl.train", *TRAIN, "--link", link]
    cmd += ["--bucket-mb", bucket, "--metrics", str(metrics)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    steps = [json.loads(line) for line in metrics.read_text().splitlines()]
    steps = [r for r in steps if r.get("kind") == "step"][1:]  # the first step pays for warm-up

    def median(key: str) -> float:
        return statistics.median(r[key] for r in steps)

    row = {"bucket_mb": bucket, "steps": len(steps), "load": os.getloadavg()[0]}
    row.update({f"{k}_ms": 1e3 * median(k) for k in ("total", "backward", "comm", "exposed_comm")})
    if found := CHOSE.search(proc.stdout):
        row.update(
            chosen_mb=float(found.group(1)),
            buckets=int(found.group(2)),
            predicted_comm_ms=float(found.group(3)),
            predicted_exposed_ms=float(found.group(4)),
        )
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--link", default="1Gbps,100us")
    p.add_argument("--sizes", default="auto,25,0.02", help="bucket sizes to compare, comma separated")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=600, help="seconds per launch")
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for bucket in args.sizes.split(","):
                row = launch(args.ranks, args.link, bucket, Path(tmp) / f"m-{repeat}-{bucket}.jsonl", args.timeout)
                row["repeat"] = repeat
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{'bucket MiB':>10} {'step ms':>9} {'backward ms':>11} {'allreduce ms':>12} {'exposed ms':>10}")
    for bucket in args.sizes.split(","):
        mine = [r for r in rows if r["bucket_mb"] == bucket]
        cells = [
            statistics.median(r[k] for r in mine) for k in ("total_ms", "backward_ms", "comm_ms", "exposed_comm_ms")
        ]
        print(f"{bucket:>10} " + " ".join(f"{c:>{w}.1f}" for c, w in zip(cells, (9, 11, 12, 10))))
    if args.out:
        out = {"command": " ".join(sys.argv), "train": TRAIN, "link": args.link, "ranks": args.ranks, "rows": rows}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
