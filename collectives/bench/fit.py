"""``python -m collectives.bench.fit RUN.json [RUN.json ...]``: fit ``algorithm="auto"``'s model to measurements.

Reads the ``--json`` output of ``python -m collectives.bench`` (one file per rank count; run
them on the machine and at the rank counts you care about), fits alpha, beta and gamma so the
registered cost formulas best predict every measured time (:func:`collectives.select.fit`),
one model per rank count in the runs (how much a message costs depends on how many processes
share the machine), and reports how well each model chooses: for every (ranks, size) of the
runs, the algorithm it picks against the one measured fastest (the median over runs), and the
time lost when they differ, first out of sample (leave one launch out: fit on the other
launches of that rank count, score on the one left out), then in sample. Prints the line that uses the fitted models
(``COLLECTIVES_MODEL='2:alpha,beta,gamma;4:...'``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from collectives import select
from collectives.algorithms import ALGORITHMS


def load(paths: list[str]) -> list[select.Sample]:
    """(algorithm, p, nbytes, itemsize, seconds) for every hand-written algorithm's measurement."""
    samples = []
    for path in paths:
        try:
            samples += samples_of(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError) as e:
            raise SystemExit(f"collectives.bench.fit: {path}: not a 'collectives.bench --json' output ({e})") from None
    return samples


def samples_of(run: dict) -> list[select.Sample]:
    """One launch's allreduce measurements of registered algorithms (not MPI, not auto)."""
    samples = []
    for r in run["records"]:
        if (
            r.get("collective", "allreduce") == "allreduce"
            and r["algorithm"] in ALGORITHMS
            and r.get("redop", "sum") == "sum"
        ):
            itemsize = np.dtype(r["type"]).itemsize
            samples.append((r["algorithm"], int(r["ranks"]), int(r["bytes"]), itemsize, r["time_us"] * 1e-6))
    return samples


def auto_lost(run: dict) -> list[float]:
    """Per size of one launch: the time ``auto`` took / the fastest registered algorithm's (1.0: as fast)."""
    by_size: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in run["records"]:
        if r.get("collective", "allreduce") == "allreduce" and r.get("redop", "sum") == "sum":
            by_size[(r["type"], r["bytes"])][r["algorithm"]] = r["time_us"]
    out = []
    for times in by_size.values():
        ours = [t for name, t in times.items() if name in ALGORITHMS]
        if "auto" in times and ours:
            out.append(times["auto"] / min(ours))
    return out


def out_of_sample(runs: list[dict]) -> dict[int, dict[str, float | int]]:
    """Per rank count: fit on every launch but one, score the picks on the one left out, for each launch.

    Returns hits / cases and the median and worst time lost by the fitted model's picks; also how the
    shipped ``auto`` (fitted on older launches, so out of sample as well) did, as measured in the launches.
    """
    by_p: dict[int, list[list[select.Sample]]] = defaultdict(list)
    auto: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        s = samples_of(run)
        if s:
            by_p[s[0][1]].append(s)
            auto[s[0][1]] += auto_lost(run)
    scores = {}
    for p, launches in sorted(by_p.items()):
        rows = []
        for k, held_out in enumerate(launches):
            train = [x for i, launch in enumerate(launches) if i != k for x in launch]
            if not train:
                continue
            model, _ = select.fit(train)
            rows += choices(held_out, lambda _p, m=model: m)
        lost = [ratio for *_, ratio in rows]
        scores[p] = {
            "launches": len(launches),
            "cases": len(rows),
            "hits": sum(best == pick for _, _, best, pick, _ in rows),
            "median_lost": statistics.median(lost) if lost else float("nan"),
            "worst_lost": max(lost) if lost else float("nan"),
            "auto_cases": len(auto[p]),
            "auto_median_lost": statistics.median(auto[p]) if auto[p] else float("nan"),
            "auto_worst_lost": max(auto[p]) if auto[p] else float("nan"),
        }
    return scores


def out_of_sample_lines(runs: list[dict]) -> list[str]:
    lines = []
    for p, s in out_of_sample(runs).items():
        if s["cases"]:
            lines.append(
                f"p={p}: fitted on {s['launches'] - 1} launch(es), scored on the other, each way: picks the measured "
                f"fastest in {s['hits']} of {s['cases']} cases; its pick's time / the fastest's: median "
                f"{s['median_lost']:.2f}x, worst {s['worst_lost']:.2f}x"
            )
        else:
            lines.append(f"p={p}: one launch only, nothing to score out of sample")
        if s["auto_cases"]:
            lines.append(
                f"p={p}: the shipped auto (fitted on older launches), as measured here: its time / the fastest "
                f"algorithm's: median {s['auto_median_lost']:.2f}x, worst {s['auto_worst_lost']:.2f}x "
                f"over {s['auto_cases']} sizes"
            )
    return lines


def choices(samples: list[select.Sample], model_for: Callable[[int], select.MachineModel]) -> list[tuple]:
    """Per (p, bytes): (p, bytes, measured fastest, predicted fastest, its measured time / the fastest's)."""
    cases: dict[tuple[int, int, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for name, p, nbytes, itemsize, seconds in samples:
        cases[(p, nbytes, itemsize)][name].append(seconds)  # several runs: their median
    rows = []
    for (p, nbytes, itemsize), runs in sorted(cases.items()):
        times = {name: statistics.median(t) for name, t in runs.items()}
        order = {n: i for i, n in enumerate(ALGORITHMS)}
        best = min(times, key=lambda n: (times[n], order[n]))
        m = model_for(p)
        predicted = {n: m.predict(ALGORITHMS[n].cost(p, nbytes, itemsize)) for n in times}
        pick = min(predicted, key=lambda n: (predicted[n], order[n]))  # ties as select.choose breaks them
        rows.append((p, nbytes, best, pick, times[pick] / times[best]))
    return rows


def describe(m: select.MachineModel) -> str:
    return (
        f"alpha={m.alpha * 1e6:.3g} us, 1/beta={1 / m.beta / 1e9:.3g} GB/s, 1/gamma={1 / m.gamma / 1e9:.3g} GB/s, "
        f"{'transfers overlap reductions' if m.overlap else 'no overlap'}"
    )


def report(samples: list[select.Sample], name: str, model_for: Callable[[int], select.MachineModel]) -> list[str]:
    rows = choices(samples, model_for)
    hits = sum(best == pick for _, _, best, pick, _ in rows)
    lost = [ratio for *_, ratio in rows]
    lines = [f"{name}:"]
    for p in sorted({s[1] for s in samples}):
        lines.append(f"  p={p}: {describe(model_for(p))}")
    lines.append(
        f"  picks the measured fastest in {hits} of {len(rows)} cases; median time vs the fastest "
        f"{statistics.median(lost):.2f}x, worst {max(lost):.2f}x"
    )
    errors: dict[str, list[float]] = defaultdict(list)
    for algo, p, nbytes, itemsize, seconds in samples:
        m = model_for(p)
        errors[algo].append(abs(m.predict(ALGORITHMS[algo].cost(p, nbytes, itemsize)) / seconds - 1))
    lines.append(
        "  median |predicted/measured - 1| per algorithm: "
        + ", ".join(f"{a} {statistics.median(e):.0%}" for a, e in sorted(errors.items()))
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m collectives.bench.fit",
        description="Fit the alpha, beta, gamma of algorithm='auto' to 'python -m collectives.bench --json' runs, "
        "one model per rank count found in them.",
    )
    ap.add_argument("runs", nargs="+", help="JSON files written by 'python -m collectives.bench --json FILE'")
    ap.add_argument("--verbose", action="store_true", help="list every (ranks, size) choice")
    a = ap.parse_args(argv)
    samples = load(a.runs)
    print("out of sample (fit on all launches of a rank count but one, score on that one):")
    for line in out_of_sample_lines([json.loads(Path(path).read_text()) for path in a.runs]):
        print("  " + line)
    print("in sample (fit and score on the same launches; flatters the model):")
    if not samples:
        raise SystemExit("collectives.bench.fit: the runs hold no hand-written algorithm's measurements")
    fitted: dict[int, select.MachineModel] = {}
    for p in sorted({s[1] for s in samples}):
        fitted[p], error = select.fit([s for s in samples if s[1] == p])
        print(f"p={p}: {sum(s[1] == p for s in samples)} measurements, fitted median |error| {error:.0%}")
    for line in report(samples, "current model", select.get_model):
        print(line)
    for line in report(samples, "fitted model", fitted.__getitem__):
        print(line)
    if a.verbose:
        for p, nbytes, best, pick, ratio in choices(samples, fitted.__getitem__):
            print(f"  p={p:<3} {nbytes:>10} B  fastest {best:<20} fitted picks {pick:<20} {ratio:.2f}x")
    spec = ";".join(
        f"{p}:{m.alpha:.4g},{m.beta:.4g},{m.gamma:.4g}{',1' if m.overlap else ''}" for p, m in fitted.items()
    )
    print(f"use it: export COLLECTIVES_MODEL='{spec}'")
    print("    or: collectives.select.set_model(collectives.select.MachineModel(alpha, beta, gamma), p=P)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
