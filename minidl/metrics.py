"""Training metrics written one row per step (and per epoch) as JSON lines or CSV.

JSONL keeps every field of every row; CSV has a fixed header (the union of the fields known
up front), with empty cells where a row has no value, so spreadsheets and pandas read it.

With ``config=`` the first record (``kind: "config"``) holds the run's configuration, so a
metrics file says how it was made and ``python -m minidl.study compare`` can label runs by what
differs between them; in CSV the configuration is one JSON cell of that first row. Every row is
stamped with ``elapsed``, the seconds since the writer was opened, so runs can be compared
against wall time.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any, TextIO

STEP_FIELDS = (
    "kind",
    "epoch",
    "step",
    "loss",
    "lr",
    "samples",
    "forward",
    "backward",
    "exposed_comm",
    "optimizer",
    "comm",
    "overlap_efficiency",
    "samples_per_second",
    "b_simple",
    "train_accuracy",
    "test_accuracy",
    "total",  # seconds of the step (forward + backward + exposed_comm + optimizer)
    "elapsed",  # seconds since the writer was opened
    "config",  # the run's configuration (first row only, JSON in CSV)
)


def _jsonable(value: Any) -> Any:
    """Configuration values as JSON: tuples as lists, anything else unknown (a Link, a Path) as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


class MetricsWriter:
    """Append rows to ``path`` (``.jsonl`` or ``.csv``); use as a context manager.

    ``config`` (e.g. ``vars(args)``) is written first as a ``kind: "config"`` record.
    """

    def __init__(self, path: str | Path, config: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        if self.path.suffix not in (".jsonl", ".csv"):
            raise ValueError(f"metrics file {self.path} must end in .jsonl or .csv")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: TextIO = self.path.open("w", newline="")
        self._csv = None
        self._start = time.perf_counter()
        if self.path.suffix == ".csv":
            self._csv = csv.DictWriter(self._fh, fieldnames=STEP_FIELDS, extrasaction="ignore")
            self._csv.writeheader()
        if config is not None:
            self._write_config(_jsonable(dict(config)))

    def _write_config(self, config: dict[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow({"kind": "config", "config": json.dumps(config)})
        else:
            self._fh.write(json.dumps({"kind": "config", "config": config}) + "\n")
        self._fh.flush()

    def write(self, row: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        clean.setdefault("elapsed", time.perf_counter() - self._start)
        if self._csv is not None:
            self._csv.writerow({k: ("" if v is None else v) for k, v in clean.items()})
        else:
            self._fh.write(json.dumps(clean) + "\n")

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
