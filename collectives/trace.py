"""Chrome's trace event format, written in one place: traces that Perfetto and chrome://tracing open.

A trace is JSON ``{"traceEvents": [...]}``. Every slice is a *complete* event (``"ph": "X"``) with
a start ``ts`` and a duration ``dur`` in microseconds, on a track named by a process id and a
thread id; *metadata* events (``"ph": "M"``) give processes and threads their names and order;
*counter* events (``"ph": "C"``) sample a number over time.
Slices on one track must nest (a slice ends before the one around it), so activities that really
overlap (a rank sending two messages at once) go on separate lanes: :func:`lanes` assigns them.
Pure standard library: the simulator and the trainer both write through this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

US = 1e6  # the format's unit is the microsecond


class Trace:
    """Tracks and slices of one trace; times are given in seconds and stored in microseconds."""

    def __init__(self, **metadata: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self.metadata = dict(metadata)  # free-form, kept at the top level of the file (Perfetto ignores it)

    def process(self, pid: int, name: str, order: int | None = None) -> None:
        """Name process ``pid`` (one group of tracks, e.g. a rank); ``order`` sorts the groups."""
        self.events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": name}})
        if order is not None:
            self.events.append(
                {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": order}}
            )

    def thread(self, pid: int, tid: int, name: str, order: int | None = None) -> None:
        """Name track ``tid`` of process ``pid`` (a thread, or a lane of overlapping activities)."""
        self.events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}})
        self.events.append(
            {
                "ph": "M",
                "name": "thread_sort_index",
                "pid": pid,
                "tid": tid,
                "args": {"sort_index": tid if order is None else order},
            }
        )

    def slice(
        self, pid: int, tid: int, name: str, start: float, end: float, cat: str = "", args: dict[str, Any] | None = None
    ) -> None:
        """A complete event from ``start`` to ``end`` seconds on track (``pid``, ``tid``)."""
        if not end >= start:  # also refuses NaN
            raise ValueError(
                f"trace slice {name!r} on track ({pid}, {tid}) ends at {end} s before it starts at {start} s"
            )
        event = {"ph": "X", "name": name, "pid": pid, "tid": tid, "ts": start * US, "dur": (end - start) * US}
        if cat:
            event["cat"] = cat
        if args:
            event["args"] = args
        self.events.append(event)

    def counter(self, pid: int, name: str, t: float, values: dict[str, float]) -> None:
        """A sample of counter track ``name`` of process ``pid`` at ``t`` seconds (``"ph": "C"``): a
        step function drawn above the process's threads, one series per key of ``values``."""
        self.events.append({"ph": "C", "name": name, "pid": pid, "tid": 0, "ts": t * US, "args": dict(values)})

    def as_json(self) -> dict[str, Any]:
        return {
            "traceEvents": self.events,
            "displayTimeUnit": "ms",
            **({"metadata": self.metadata} if self.metadata else {}),
        }

    def write(self, path: str | Path) -> Path:
        """Write the trace as JSON (compact: traces get large); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as fh:
            json.dump(self.as_json(), fh, separators=(",", ":"))
        return path


def lanes(spans: Iterable[tuple[float, float]]) -> list[int]:
    """The lane of each (start, end) span such that spans in one lane never overlap; as few lanes as possible.

    Greedy interval colouring in order of start time: a span takes the lowest lane free at its start.
    """
    items: Sequence[tuple[float, float]] = list(spans)
    order = sorted(range(len(items)), key=lambda i: (items[i][0], items[i][1]))
    ends: list[float] = []  # ends[k]: when lane k is free again
    out = [0] * len(items)
    for i in order:
        start, end = items[i]
        lane = next((k for k, free in enumerate(ends) if free <= start), len(ends))
        if lane == len(ends):
            ends.append(end)
        else:
            ends[lane] = end
        out[i] = lane
    return out
