"""Choosing an algorithm (``algorithm="auto"``) from the cost models, and explaining the choice.

The decision is separate from the algorithms (as MPICH's selection table and NCCL's tuner are):
it reads only each registered spec's ``cost`` and ``constraints``, evaluates the predicted time
under a machine model (alpha, beta, gamma) and takes the fastest. It is deterministic, so every
rank picks the same algorithm without talking to the others.

The default model was measured on the development machine (one node, shared memory, through
this package's Python transport): alpha is the per-message cost including Python's overhead,
beta the time per byte of a point-to-point transfer, gamma the time per byte of a numpy
reduction. Override it with :func:`set_model` (for example with figures from
``python -m collectives.sim calibrate``) or with the COLLECTIVES_MODEL environment variable,
"alpha,beta,gamma" in seconds and seconds per byte.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from collectives import plans
from collectives.algorithms import REGISTRY


@dataclass(frozen=True)
class MachineModel:
    """alpha (s per message), beta (s per byte moved), gamma (s per byte reduced)."""

    alpha: float = 3.0e-6
    beta: float = 1.0 / 9e9
    gamma: float = 1.0 / 12e9


def _from_env() -> MachineModel:
    text = os.environ.get("COLLECTIVES_MODEL")
    if not text:
        return MachineModel()
    try:
        alpha, beta, gamma = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"COLLECTIVES_MODEL must be 'alpha,beta,gamma' (three numbers), got {text!r}") from None
    return MachineModel(alpha, beta, gamma)


_model = _from_env()


def set_model(model: MachineModel) -> None:
    """Use ``model`` for every later automatic choice."""
    global _model
    _model = model
    _choose.cache_clear()
    plans.invalidate()  # cached calls with algorithm="auto" chose under the old model


def get_model() -> MachineModel:
    return _model


def predictions(p: int, nbytes: int, itemsize: int = 1) -> list[tuple[str, float | None, str]]:
    """(name, predicted seconds or None, reason it cannot run) for every registered algorithm."""
    rows = []
    m = _model
    for name, spec in REGISTRY.items():
        why = spec.constraints.violation(p, nbytes // itemsize)
        if why:
            rows.append((name, None, why))
        else:
            rows.append((name, spec.cost(p, nbytes, itemsize).time(m.alpha, m.beta, m.gamma), ""))
    return rows


@lru_cache(maxsize=4096)
def _choose(p: int, nbytes: int, itemsize: int, registry_key: tuple[str, ...]) -> str:
    runnable = [(t, name) for name, t, _ in predictions(p, nbytes, itemsize) if t is not None]
    if not runnable:
        raise ValueError(f"no registered allreduce algorithm can run on {p} ranks and {nbytes} bytes")
    return min(runnable)[1]


def choose(p: int, nbytes: int, itemsize: int = 1) -> str:
    """The name of the algorithm predicted fastest for ``nbytes`` on ``p`` ranks."""
    return _choose(p, nbytes, itemsize, tuple(REGISTRY))


def explain(nbytes: int, p: int, itemsize: int = 1) -> str:
    """A short report: every algorithm's predicted time, the one chosen, and why."""
    m = _model
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
        c = REGISTRY[name].cost(p, nbytes, itemsize)
        mark = "  <- chosen" if name == best else ""
        terms = f"{c.latency_terms:>11g}  {c.transfer_bytes:>10.4g}  {c.reduce_bytes:>11.4g}"
        lines.append(f"{name:<20}{t * 1e6:>14.1f}  {terms}{mark}")
    c = REGISTRY[best].cost(p, nbytes, itemsize)
    parts = {
        "latency": c.latency_terms * m.alpha,
        "transfer": c.transfer_bytes * m.beta,
        "reduction": c.reduce_bytes * m.gamma,
    }
    dominant = max(parts, key=parts.get)
    lines.append(
        f"chosen: {best} ({REGISTRY[best].summary}); its time is mostly {dominant} "
        f"({parts[dominant] / max(sum(parts.values()), 1e-30):.0%}), which it keeps lowest here."
    )
    return "\n".join(lines)
