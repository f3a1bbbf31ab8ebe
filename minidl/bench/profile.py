"""Where minidl's step time goes: every op's forward and backward, and the optimizer step, timed with
the numba kernels on and off in alternating rounds of one process."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from minidl.bench.workloads import minidl_step, set_threads


def profile_model(name: str, threads: int, rounds: int, steps: int, top: int) -> dict[str, Any]:
    """Where minidl's step time goes, per op (forward and backward separately) and optimizer step,
    with the numba kernels on and off in alternating rounds of one process."""
    from minidl import kernels
    from minidl.autograd import Function
    from minidl.optim.optimizer import Optimizer

    set_threads(threads)
    mode = ["numba"]
    totals: dict[str, dict[str, float]] = {"numba": {}, "numpy": {}}

    active: set[str] = set()  # keys being timed now: a classmethod forward calling super() counts once

    def timed(key: str | None, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` timed under ``key``; None for a classmethod, timed under its class's name (``args[0]``)."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            k = key or f"{args[0].__name__}.{fn.__name__}"
            if k in active:
                return fn(*args, **kwargs)
            active.add(k)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                active.discard(k)
                table = totals[mode[0]]
                table[k] = table.get(k, 0.0) + time.perf_counter() - start

        return wrapper

    def subclasses(cls: type) -> list[type]:
        return [c for s in cls.__subclasses__() for c in (s, *subclasses(s))]

    patched: list[tuple[Any, str, Any]] = []
    for cls in set(subclasses(Function)):
        for attr in ("forward", "backward"):
            original = cls.__dict__.get(attr)
            if isinstance(original, staticmethod):
                wrapped: Any = staticmethod(timed(f"{cls.__name__}.{attr}", original.__func__))
            elif isinstance(original, classmethod):  # e.g. the shared forward of the binary ops
                wrapped = classmethod(timed(None, original.__func__))
            else:
                continue
            patched.append((cls, attr, original))
            setattr(cls, attr, wrapped)
    patched.append((Optimizer, "step", Optimizer.__dict__["step"]))
    Optimizer.step = timed("optimizer.step", Optimizer.step)  # type: ignore[method-assign]
    try:
        step, _ = minidl_step(name)
        step_times: dict[str, list[float]] = {"numba": [], "numpy": []}
        for on in (True, False, True, False):
            with kernels.use_numba(on):
                step()
        for table in totals.values():
            table.clear()
        for r in range(rounds):
            for m in ("numba", "numpy") if r % 2 == 0 else ("numpy", "numba"):
                mode[0] = m
                with kernels.use_numba(m == "numba"):
                    for _ in range(steps):
                        start = time.perf_counter()
                        step()
                        step_times[m].append(time.perf_counter() - start)
    finally:
        for cls, attr, original in patched:
            setattr(cls, attr, original)
    n = rounds * steps
    med = {m: 1e3 * statistics.median(v) for m, v in step_times.items()}
    print(
        f"minidl {name}, {threads} thread(s), {n} steps each: median step {med['numba']:.2f} ms "
        f"with the numba kernels, {med['numpy']:.2f} ms with the numpy references"
    )
    print("ms per step (a backward's time includes the ops it calls):")
    print(f"  {'op':<28} {'numba':>8} {'numpy':>8} {'ratio':>6}")
    keys = sorted(set(totals["numba"]) | set(totals["numpy"]), key=lambda k: -totals["numpy"].get(k, 0.0))
    for k in keys[:top]:
        a, b = (1e3 * totals[m].get(k, 0.0) / n for m in ("numba", "numpy"))
        print(f"  {k:<28} {a:8.3f} {b:8.3f} {a / b if b else float('nan'):6.2f}")
    return {
        "model": name,
        "threads": threads,
        "median_step_ms": med,
        "op_ms_per_step": {m: {k: 1e3 * v / n for k, v in t.items()} for m, t in totals.items()},
    }
