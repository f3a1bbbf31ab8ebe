"""``python -m collectives.bench.fit RUN.json [RUN.json ...]``: fit ``algorithm="auto"``'s model to measurements.

Reads the ``--json`` output of ``python -m collectives.bench`` (one file per rank count; run
them on the machine and at the rank counts you care about), fits alpha, beta and gamma so the
registered cost formulas best predict every measured time (:func:`collectives.select.fit`),
and reports how well each model chooses: for every (ranks, size) of the runs, the algorithm it
picks against the one measured fastest, and the time lost when they differ. Prints the line to
use the fitted model (``COLLECTIVES_MODEL=alpha,beta,gamma``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from collectives import select
from collectives.algorithms import REGISTRY


def load(paths: list[str]) -> list[select.Sample]:
    """(algorithm, p, nbytes, itemsize, seconds) for every hand-written algorithm's measurement."""
    samples = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
            records = data["records"]
        except (OSError, ValueError, KeyError) as e:
            raise SystemExit(f"collectives.bench.fit: {path}: not a 'collectives.bench --json' output ({e})") from None
        for r in records:
            if r["algorithm"] in REGISTRY:
                itemsize = np.dtype(r["type"]).itemsize
                samples.append((r["algorithm"], int(r["ranks"]), int(r["bytes"]), itemsize, r["time_us"] * 1e-6))
    return samples


def choices(samples: list[select.Sample], model: select.MachineModel) -> list[tuple[int, int, str, str, float]]:
    """Per (p, bytes): (p, bytes, measured fastest, predicted fastest, its measured time / the fastest's)."""
    cases: dict[tuple[int, int, int], dict[str, float]] = defaultdict(dict)
    for name, p, nbytes, itemsize, seconds in samples:
        cases[(p, nbytes, itemsize)][name] = seconds
    rows = []
    for (p, nbytes, itemsize), times in sorted(cases.items()):
        best = min(times, key=times.get)
        predicted = {n: REGISTRY[n].cost(p, nbytes, itemsize).time(model.alpha, model.beta, model.gamma) for n in times}
        pick = min(predicted, key=predicted.get)
        rows.append((p, nbytes, best, pick, times[pick] / times[best]))
    return rows


def report(samples: list[select.Sample], name: str, model: select.MachineModel) -> list[str]:
    rows = choices(samples, model)
    hits = sum(best == pick for _, _, best, pick, _ in rows)
    lost = [ratio for *_, ratio in rows]
    lines = [
        f"{name}: alpha={model.alpha * 1e6:.3g} us, 1/beta={1 / model.beta / 1e9:.3g} GB/s, "
        f"1/gamma={1 / model.gamma / 1e9:.3g} GB/s",
        f"  picks the measured fastest in {hits} of {len(rows)} cases; median time vs the fastest "
        f"{statistics.median(lost):.2f}x, worst {max(lost):.2f}x",
    ]
    errors: dict[str, list[float]] = defaultdict(list)
    for algo, p, nbytes, itemsize, seconds in samples:
        predicted = REGISTRY[algo].cost(p, nbytes, itemsize).time(model.alpha, model.beta, model.gamma)
        errors[algo].append(abs(predicted / seconds - 1))
    lines.append(
        "  median |predicted/measured - 1| per algorithm: "
        + ", ".join(f"{a} {statistics.median(e):.0%}" for a, e in sorted(errors.items()))
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m collectives.bench.fit",
        description="Fit the alpha, beta, gamma of algorithm='auto' to 'python -m collectives.bench --json' runs.",
    )
    ap.add_argument("runs", nargs="+", help="JSON files written by 'python -m collectives.bench --json FILE'")
    ap.add_argument("--verbose", action="store_true", help="list every (ranks, size) choice")
    a = ap.parse_args(argv)
    samples = load(a.runs)
    if not samples:
        raise SystemExit("collectives.bench.fit: the runs hold no hand-written algorithm's measurements")
    fitted, median_error = select.fit(samples)
    print(f"{len(samples)} measurements from {len(a.runs)} run(s); fitted median |error| {median_error:.0%}")
    for line in report(samples, "current model", select.get_model()) + report(samples, "fitted model", fitted):
        print(line)
    if a.verbose:
        for p, nbytes, best, pick, ratio in choices(samples, fitted):
            print(f"  p={p:<3} {nbytes:>10} B  fastest {best:<20} fitted picks {pick:<20} {ratio:.2f}x")
    numbers = f"{fitted.alpha:.4g}, {fitted.beta:.4g}, {fitted.gamma:.4g}"
    print(f"use it: export COLLECTIVES_MODEL={numbers.replace(' ', '')}")
    print(f"    or: collectives.select.set_model(collectives.select.MachineModel({numbers}))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
