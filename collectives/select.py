"""Choosing an algorithm (``algorithm="auto"``) from the cost models, and explaining the choice.

The decision is separate from the algorithms (as MPICH's selection table and NCCL's tuner are):
it reads only each registered spec's ``cost`` and ``constraints``, evaluates the predicted time
under a machine model (alpha, beta, gamma) and takes the fastest. It is deterministic, so every
rank picks the same algorithm without talking to the others.

The model's three numbers are fitted, not looked up: :func:`fit` finds the alpha, beta and
gamma under which the registered cost formulas best predict measured allreduce times (every
algorithm, size and rank count of a ``python -m collectives.bench --json`` run), so alpha
absorbs Python's per-message overhead and beta and gamma what one node's shared memory really
delivers. ``python -m collectives.bench.fit run*.json`` does it from the command line and says
how often the fitted model picks the measured fastest algorithm. The default was fitted that
way on the development machine (see :data:`DEFAULT`). Override it with :func:`set_model`, with
the COLLECTIVES_MODEL environment variable ("alpha,beta,gamma" in seconds and seconds per byte),
or with COLLECTIVES_PROFILE, a profile written by ``python -m collectives.sim calibrate``
(:func:`model_from_profile`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from collectives import algorithms
from collectives.algorithms import ALGORITHMS
from collectives.algorithms.spec import Cost
from collectives.link import Link, parse_link


@dataclass(frozen=True)
class MachineModel:
    """alpha (s per message), beta (s per byte moved), gamma (s per byte reduced), and ``overlap``.

    ``overlap``: whether moving data and reducing it can happen at the same time, as the cost
    formulas' pipelines assume (a network card moves a segment while the CPU reduces the
    previous one). Between processes on one node MPI copies through shared memory with the CPU
    itself, so nothing overlaps: the prediction is then the plain sum of the alpha, beta and
    gamma terms, and a segmented algorithm pays for every segment's message without hiding its
    reductions.
    """

    alpha: float = 3.0e-6
    beta: float = 1.0 / 9e9
    gamma: float = 1.0 / 12e9
    overlap: bool = False

    @classmethod
    def from_link(cls, link: Link | str, gamma: float = 0.0, overlap: bool = False) -> MachineModel:
        """The model of ``link`` (a Link, a preset name or "10Gbps,20us"): alpha its latency, beta 1/bandwidth."""
        link = parse_link(link)
        return cls(link.latency, link.per_byte, gamma, overlap)

    @property
    def link(self) -> Link:
        """alpha and beta as the Link they describe."""
        return Link(self.alpha, math.inf if self.beta == 0 else 1.0 / self.beta, "fitted model")

    def predict(self, cost: Cost) -> float:
        """Seconds ``cost`` takes on this machine."""
        if self.overlap:
            return cost.time(self.alpha, self.beta, self.gamma)
        return cost.latency_terms * self.alpha + cost.transfer_bytes * self.beta + cost.reduce_bytes * self.gamma


# Fitted with ``python -m collectives.bench.fit`` to three launches of ``python -m collectives.bench``
# at p = 2 and at p = 4 on the development machine (2-core KVM guest, MPICH 5 shared memory;
# BENCHMARKS.md): p = 2 has its own model; every other rank count oversubscribes those two cores
# and takes p = 4's, where a message costs three times as much.
DEFAULT = MachineModel(1.433e-05, 1.113e-10, 4.595e-10)
DEFAULT_BY_RANKS: dict[int, MachineModel] = {2: MachineModel(4.502e-06, 1.047e-10, 1.794e-10, overlap=True)}


def model_from_profile(path: str | Path, p: int | None = None) -> MachineModel:
    """alpha, beta, gamma from a ``python -m collectives.sim calibrate`` profile (the rank count nearest ``p``)."""
    return _profile(path, p)[1]


def _profile(path: str | Path, p: int | None = None) -> tuple[dict[int, MachineModel], MachineModel]:
    try:
        data = json.loads(Path(path).read_text())

        def read(m: dict) -> MachineModel:
            return MachineModel(float(m["alpha"]), float(m["beta"]), float(m["gamma"]))

        by_ranks = {int(k): read(v) for k, v in data.get("by_ranks", {}).items()}
        model = read(data["model"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"{path}: not a calibration profile with alpha, beta and gamma ({e}); write one with "
            "'python -m collectives.sim calibrate'"
        ) from None
    if p is not None and by_ranks:
        model = by_ranks[_nearest(by_ranks, p)]
    return by_ranks, model


def parse_models(text: str) -> tuple[dict[int, MachineModel], MachineModel | None]:
    """Models per rank count from "alpha,beta,gamma" or "P:alpha,beta,gamma;P:alpha,beta,gamma;..."."""
    by_ranks: dict[int, MachineModel] = {}
    default = None
    for part in text.split(";"):
        ranks, _, numbers = part.strip().rpartition(":")
        try:
            values = [float(x) for x in numbers.split(",")]
            if len(values) not in (3, 4):
                raise ValueError
            model = MachineModel(*values[:3], overlap=len(values) == 4 and values[3] != 0)
            if ranks:
                by_ranks[int(ranks)] = model
            else:
                default = model
        except (TypeError, ValueError):
            raise ValueError(
                f"COLLECTIVES_MODEL must be 'alpha,beta,gamma[,overlap]' or 'P:alpha,beta,gamma[,overlap];P:...' "
                f"(seconds, seconds per byte, 1 if transfers overlap reductions), got {text!r}"
            ) from None
    return by_ranks, default


def _from_env() -> tuple[dict[int, MachineModel], MachineModel]:
    text = os.environ.get("COLLECTIVES_MODEL")
    profile = os.environ.get("COLLECTIVES_PROFILE")
    if text:
        by_ranks, default = parse_models(text)  # without a default: the largest rank count's model
        return by_ranks, default or (by_ranks[max(by_ranks)] if by_ranks else DEFAULT)
    if profile:
        return _profile(profile)
    return dict(DEFAULT_BY_RANKS), DEFAULT


_by_ranks, _model = _from_env()
model_version = 0  # increased by set_model; caches of automatic choices compare it


def _nearest(by_ranks: dict[int, MachineModel], p: int) -> int:
    return min(by_ranks, key=lambda k: (abs(k - p), -k))


def set_model(model: MachineModel, p: int | None = None) -> None:
    """Use ``model`` for every later automatic choice on ``p`` ranks, or (``p=None``) on every rank count.

    ``set_model(m)`` replaces the per-rank-count models too; ``set_model(m, p=8)`` adds or
    replaces the one for 8 ranks. A rank count without its own model uses the model for every
    rank count.
    """
    global _model, _by_ranks
    if p is None:
        _model, _by_ranks = model, {}
    else:
        _by_ranks = {**_by_ranks, int(p): model}
    global model_version
    _choose.cache_clear()
    model_version += 1  # plans of calls with algorithm="auto" chose under the old model


def get_model(p: int | None = None) -> MachineModel:
    """The model ``auto`` uses on ``p`` ranks (``p=None``: the one for rank counts without their own)."""
    return _by_ranks.get(p, _model) if _by_ranks else _model


def models() -> dict[int, MachineModel]:
    """The per-rank-count models in use (empty: one model for every rank count)."""
    return dict(_by_ranks)


def predictions(p: int, nbytes: int, itemsize: int = 1) -> list[tuple[str, float | None, str]]:
    """(name, predicted seconds or None, reason it cannot run) for every registered algorithm."""
    rows = []
    m = get_model(p)
    for name, spec in ALGORITHMS.items():
        why = spec.constraints.violation(p, nbytes // itemsize)
        if why:
            rows.append((name, None, why))
        else:
            rows.append((name, m.predict(spec.cost(p, nbytes, itemsize)), ""))
    return rows


@lru_cache(maxsize=4096)
def _choose(p: int, nbytes: int, itemsize: int, registry_version: int) -> str:
    # Equal predictions (the ring, Rabenseifner and the double tree are the same exchanges on two
    # ranks) go to the algorithm registered first: the simpler one, with less Python per step.
    runnable = [(t, i, name) for i, (name, t, _) in enumerate(predictions(p, nbytes, itemsize)) if t is not None]
    if not runnable:
        raise ValueError(f"no registered allreduce algorithm can run on {p} ranks and {nbytes} bytes")
    return min(runnable)[2]


def choose(p: int, nbytes: int, itemsize: int = 1) -> str:
    """The name of the algorithm predicted fastest for ``nbytes`` on ``p`` ranks."""
    return _choose(p, nbytes, itemsize, algorithms.version)


def explain(nbytes: int, p: int, itemsize: int = 1) -> str:
    """A short report: every algorithm's predicted time, the one chosen, and why."""
    m = get_model(p)
    rows = sorted(predictions(p, nbytes, itemsize), key=lambda r: (r[1] is None, r[1] or 0.0))
    best = choose(p, nbytes, itemsize)
    lines = [
        f"allreduce of {nbytes} bytes on {p} ranks: model alpha={m.alpha * 1e6:.2f} us/message, "
        f"1/beta={1 / m.beta / 1e9:.1f} GB/s, 1/gamma={1 / m.gamma / 1e9:.1f} GB/s reduced",
        f"{'algorithm':<20}{'predicted us':>14}  alpha terms  beta bytes  gamma bytes",
    ]
    for name, t, why in rows:
        if t is None:
            lines.append(f"{name:<20}{'-':>14}  cannot run: {why}")
            continue
        c = ALGORITHMS[name].cost(p, nbytes, itemsize)
        mark = "  <- chosen" if name == best else ""
        terms = f"{c.latency_terms:>11g}  {c.transfer_bytes:>10.4g}  {c.reduce_bytes:>11.4g}"
        lines.append(f"{name:<20}{t * 1e6:>14.1f}  {terms}{mark}")
    c = ALGORITHMS[best].cost(p, nbytes, itemsize)
    parts = {
        "latency": c.latency_terms * m.alpha,
        "transfer": c.transfer_bytes * m.beta,
        "reduction": c.reduce_bytes * m.gamma,
    }
    dominant = max(parts, key=parts.get)
    lines.append(
        f"chosen: {best} ({ALGORITHMS[best].summary}); its time is mostly {dominant} "
        f"({parts[dominant] / max(sum(parts.values()), 1e-30):.0%}), which it keeps lowest here."
    )
    return "\n".join(lines)


Sample = tuple[str, int, int, int, float]  # (algorithm, p, nbytes, itemsize, measured seconds)


def fit(samples: Iterable[Sample], start: MachineModel | None = None) -> tuple[MachineModel, float]:
    """The model under which the registered costs best predict ``samples``; and its median relative error.

    Minimises the mean squared log ratio of predicted to measured time (so a 10 us and a 10 ms
    measurement count alike) over log alpha, log beta, log gamma with Nelder and Mead's simplex
    (three parameters; no SciPy needed), once without and once with ``overlap``, and keeps the
    better. Samples of unregistered algorithms are skipped.
    """
    rows = [
        (ALGORITHMS[name].cost(p, nbytes, itemsize), seconds)
        for name, p, nbytes, itemsize, seconds in samples
        if name in ALGORITHMS and p > 1 and seconds > 0
    ]
    if not rows:
        raise ValueError("fit: no usable samples (registered algorithms on p > 1 ranks with positive times)")
    m = start or _model
    best: tuple[float, MachineModel] | None = None
    for overlap in (False, True):

        def loss(x: list[float], overlap: bool = overlap) -> float:
            model = MachineModel(*(math.exp(v) for v in x), overlap=overlap)
            return sum(math.log(max(model.predict(c), 1e-30) / t) ** 2 for c, t in rows) / len(rows)

        x = _nelder_mead(loss, [math.log(m.alpha), math.log(m.beta), math.log(m.gamma)])
        if best is None or loss(x) < best[0]:
            best = (loss(x), MachineModel(*(math.exp(v) for v in x), overlap=overlap))
    model = best[1]
    errors = sorted(abs(model.predict(c) / t - 1) for c, t in rows)
    return model, errors[len(errors) // 2]


def _nelder_mead(f, x0: list[float], step: float = 1.0, iterations: int = 600, tol: float = 1e-10) -> list[float]:
    """Minimise ``f`` from ``x0`` with the Nelder-Mead simplex (standard coefficients)."""
    n = len(x0)
    simplex = [list(x0)] + [[x + (step if i == j else 0.0) for j, x in enumerate(x0)] for i in range(n)]
    values = [f(x) for x in simplex]
    for _ in range(iterations):
        order = sorted(range(n + 1), key=values.__getitem__)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        if values[-1] - values[0] < tol:
            break
        centroid = [sum(x[j] for x in simplex[:-1]) / n for j in range(n)]
        worst = simplex[-1]
        reflected = _toward(centroid, worst, -1.0)
        fr = f(reflected)
        if fr < values[0]:
            expanded = _toward(centroid, worst, -2.0)
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = _toward(centroid, worst, 0.5)
            fc = f(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:  # shrink toward the best point
                simplex = [simplex[0]] + [[b + 0.5 * (x - b) for b, x in zip(simplex[0], s)] for s in simplex[1:]]
                values = [values[0]] + [f(x) for x in simplex[1:]]
    return simplex[min(range(n + 1), key=values.__getitem__)]


def _toward(centroid: list[float], worst: list[float], t: float) -> list[float]:
    return [c + t * (w - c) for c, w in zip(centroid, worst)]
