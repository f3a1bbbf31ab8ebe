"""The whole correctness-and-cost harness for one algorithm, in one call: :func:`check`.

For ours and for a user's own: real data against numpy over rank counts, sizes, dtypes, ops and
random delivery orders; the symbolic proof (every rank ends with every rank's data exactly
once); the per-rank counters against the declared closed-form :class:`Cost`, with the verdict on
bandwidth optimality; and the simulated time against the closed form on a contention-free
fully connected network, term by term.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from collectives.algorithms import AlgorithmSpec
from collectives.ops import OPS
from collectives.sim.cost_model import CostModel
from collectives.sim.errors import SimulationError
from collectives.sim.simulate import AlgorithmLike, check_real, check_symbolic, resolve, simulate
from collectives.sim.units import format_size

REAL_RANKS = (1, 2, 3, 4, 5, 7, 8, 16)
MATRIX_RANKS = (3, 4)
LARGE_RANKS = (64, 256)
SYMBOLIC_RANKS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 31, 32, 33, 64, 100, 128, 256)
DTYPES = (
    "int8",
    "int32",
    "int64",
    "uint8",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
    "bool",
)
COST_RANKS = (2, 3, 4, 5, 8, 16)
COST_SIZES = (1024, (1 << 20) + 12, 64 << 20)
TOLERANCE = 0.01  # closed form vs simulation on the contention-free network
# A neutral machine for the time cross-check; any positive numbers would do.
ALPHA, BETA, GAMMA = 2e-6, 1 / 10e9, 1 / 5e9


def real_sizes(p: int) -> list[int]:
    return sorted({0, 1, max(p - 1, 0), p, p + 1, 7, 100, 1000})


def symbolic_sizes(p: int) -> list[int]:
    if p > 32:
        return [p + 1, 1_000_003]
    return sorted({0, 1, max(p - 1, 0), p, p + 1, 3 * p + 2, 1_000_003})


@dataclass
class Section:
    """One part of the report: a title, a verdict and what was found."""

    title: str
    ok: bool | None  # None: informational
    summary: str
    details: list[str] = field(default_factory=list)

    def render(self) -> str:
        mark = {True: "PASS", False: "FAIL", None: "    "}[self.ok]
        lines = [f"  {self.title:<16}{mark}  {self.summary}"]
        lines += [f"  {'':<22}{d}" for d in self.details]
        return "\n".join(lines)


@dataclass
class CheckReport:
    """What :func:`check` found; ``ok`` is False if any section failed."""

    algorithm: str
    summary: str
    sections: list[Section]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(s.ok is not False for s in self.sections)

    def __str__(self) -> str:
        head = f"check {self.algorithm}" + (f" ({self.summary})" if self.summary else "")
        verdict = "all checks passed" if self.ok else "FAILED"
        body = "\n".join(s.render() for s in self.sections)
        return f"{head}\n{body}\n  {verdict} in {self.seconds:.1f} s"

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise AssertionError(str(self))


def _run_cases(cases: Iterable[tuple], run: Callable[..., Any], limit: int = 5) -> tuple[int, list[str]]:
    count, failures = 0, []
    for case in cases:
        count += 1
        try:
            run(*case)
        except SimulationError as e:
            failures.append(f"{type(e).__name__}: {e}")
            if len(failures) >= limit:
                break
    return count, failures


def _real_section(spec: Any, ranks: Iterable[int], large: Iterable[int], dtypes: Iterable[str], seeds: int) -> Section:
    def cases():
        for p in ranks:
            for n in real_sizes(p):
                for seed in [None, *range(1, seeds)]:
                    yield (p, n, "int64", "sum", seed)
        for p in MATRIX_RANKS:
            for n in (0, p + 2, 100):
                for dtype in dtypes:
                    for op in OPS.values():
                        if op.check_dtype(np.dtype(dtype)) is None:
                            yield (p, n, dtype, op.name, 7)
        for p in large:
            yield (p, p + 1, "int64", "sum", 2)

    count, failures = _run_cases(cases(), lambda p, n, dt, op, seed: check_real(spec, p, n, dt, op, seed))
    summary = (
        f"{count} runs vs numpy: p in {_ranks_text(ranks)}{', ' + _ranks_text(large) if large else ''}; "
        f"n in 0, 1, p-1, p, p+1, 7, 100, 1000; {len(list(dtypes))} dtypes x {len(OPS)} ops; "
        f"{seeds} delivery order(s) each"
    )
    return Section("real data", not failures, summary, failures)


def _symbolic_section(spec: Any, ranks: Iterable[int]) -> Section:
    def cases():
        for p in ranks:
            for i, n in enumerate(symbolic_sizes(p)):
                yield (p, n, None if i % 2 == 0 else 100 + p)

    count, failures = _run_cases(cases(), lambda p, n, seed: check_symbolic(spec, p, n, seed))
    summary = (
        f"{count} runs: every element of every rank holds every rank exactly once; "
        f"p in {_ranks_text(ranks)}; n in 0, 1, p-1, p, p+1, 3p+2, 1000003"
    )
    return Section("symbolic", not failures, summary, failures)


def _cost_sections(spec: AlgorithmSpec, itemsize: int = 4) -> list[Section]:
    counter_bad, optimal, worst, worst_case = [], [], 0.0, ""
    term_notes: list[str] = []
    model = CostModel.textbook(ALPHA, BETA, GAMMA)
    cases = 0
    for p in COST_RANKS:
        for nbytes in COST_SIZES:
            nbytes -= nbytes % itemsize
            cases += 1
            declared = spec.cost(p, nbytes, itemsize)
            result = simulate(spec.run, p, nbytes, model=model)
            b = result.busiest()
            where = f"p={p}, {format_size(nbytes)}B"
            if b["messages_sent"] != declared.messages_per_rank:
                counter_bad.append(
                    f"{where}: busiest rank sends {b['messages_sent']} messages, declared {declared.messages_per_rank}"
                )
            if abs(b["bytes_sent"] - declared.bytes_sent_per_rank) > 1e-9 * max(1.0, b["bytes_sent"]):
                counter_bad.append(
                    f"{where}: busiest rank sends {b['bytes_sent']} B, declared {_num(declared.bytes_sent_per_rank)} B"
                )
            if p > 1 and nbytes >= 1 << 20:
                optimal.append(b["bytes_sent"] / (2 * (p - 1) / p * nbytes))
            formula = declared.time(ALPHA, BETA, GAMMA)
            dev = abs(result.time - formula) / formula if formula else abs(result.time)
            if dev > worst:
                worst, worst_case = dev, where
                term_notes = _terms(spec, p, nbytes, itemsize, declared, result.time, formula)
    counters = Section(
        "counters",
        not counter_bad,
        f"busiest rank's messages and bytes sent vs the declared Cost in {cases} cases "
        f"(p in {_ranks_text(COST_RANKS)}, {', '.join(format_size(s) + 'B' for s in COST_SIZES)})",
        counter_bad[:6],
    )
    ratio = max(optimal) if optimal else 1.0
    verdict = (
        "bandwidth-optimal (the lower bound is 2(p-1)/p n per rank)"
        if ratio < 1.02
        else f"{ratio:.2f}x the bandwidth lower bound of 2(p-1)/p n per rank"
    )
    bandwidth = Section("bandwidth", None, f"busiest rank sends up to {ratio:.2f}x of 2(p-1)/p n: {verdict}")
    timing = Section(
        "time vs formula",
        worst <= TOLERANCE,
        f"largest deviation {worst:.1%} (at {worst_case or '-'}) over the same cases, textbook model "
        f"(one port, alpha={ALPHA * 1e6:g} us, 1/beta={1 / BETA / 1e9:g} GB/s, 1/gamma={1 / GAMMA / 1e9:g} GB/s)",
        term_notes if worst > TOLERANCE else [],
    )
    return [counters, bandwidth, timing]


def critical_terms(run: Any, p: int, nbytes: int, model: CostModel | None = None) -> tuple[float, float, float]:
    """The simulated alpha terms, beta bytes and gamma bytes on the critical path, one at a time.

    Each is the collective's time with that unit cost alone (e.g. alpha = 1 s, beta = gamma = 0),
    so it compares directly with ``Cost.latency_terms``, ``transfer_bytes`` and ``reduce_bytes``.
    """
    base = model or CostModel.textbook(0, 0)
    units = [base.replace(alpha=1.0), base.replace(beta=1.0), base.replace(gamma=1.0)]
    lat, xfer, red = (simulate(run, p, nbytes, model=m).time for m in units)
    return lat, xfer, red


def _terms(spec: AlgorithmSpec, p: int, nbytes: int, itemsize: int, declared: Any, sim: float, formula: float) -> list:
    lat, xfer, red = critical_terms(spec.run, p, nbytes)
    return [
        f"at p={p}, {format_size(nbytes)}B: simulated {sim * 1e6:.1f} us, formula {formula * 1e6:.1f} us",
        f"alpha terms  simulated {_num(lat)}, declared {_num(declared.latency_terms)}",
        f"beta bytes   simulated {_num(xfer)}, declared {_num(declared.transfer_bytes)}",
        f"gamma bytes  simulated {_num(red)}, declared {_num(declared.reduce_bytes)}",
        "(each term alone; when all three count, the simulation can overlap them, the formula adds them)",
    ]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.6g}"


def _ranks_text(ranks: Iterable[int]) -> str:
    ranks = sorted(set(ranks))
    if not ranks:
        return "-"
    runs, start = [], ranks[0]
    for a, b in zip(ranks, [*ranks[1:], None]):
        if b != a + 1:
            runs.append(str(start) if start == a else f"{start}..{a}")
            start = b
    return ", ".join(runs)


def check(
    algorithm: AlgorithmLike,
    *,
    ranks: Iterable[int] = REAL_RANKS,
    large_ranks: Iterable[int] = LARGE_RANKS,
    symbolic_ranks: Iterable[int] = SYMBOLIC_RANKS,
    dtypes: Iterable[str] = DTYPES,
    seeds: int = 2,
    cost: bool = True,
    verbose: bool = False,
) -> CheckReport:
    """Run the whole harness on one algorithm (a registered name, an AlgorithmSpec or a generator).

    Returns a :class:`CheckReport`; print it, or call ``raise_if_failed()`` in a test. Without a
    declared cost (a bare generator function) the counter and time sections are skipped.
    """
    start = time.perf_counter()
    name, run, spec = resolve(algorithm)
    target: Any = spec if spec is not None else run
    sections = []
    ranks, large_ranks, symbolic_ranks, dtypes = list(ranks), list(large_ranks), list(symbolic_ranks), list(dtypes)
    for make in (
        lambda: _real_section(target, ranks, large_ranks, dtypes, seeds),
        lambda: _symbolic_section(target, symbolic_ranks),
    ):
        sections.append(make())
        if verbose:
            print(sections[-1].render(), flush=True)
    if cost and spec is not None:
        try:
            for section in _cost_sections(spec):
                sections.append(section)
                if verbose:
                    print(section.render(), flush=True)
        except SimulationError as e:
            sections.append(Section("counters", False, f"the sizes-only run failed: {e}"))
    elif cost:
        sections.append(Section("counters", None, "skipped: no declared cost (register an AlgorithmSpec to compare)"))
    return CheckReport(name, spec.summary if spec else "", sections, time.perf_counter() - start)
