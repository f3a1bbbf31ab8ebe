"""Training metrics written one row per step (and per epoch) as JSON lines or CSV.

JSONL keeps every field of every row; CSV has a fixed header (the union of the fields known
up front), with empty cells where a row has no value, so spreadsheets and pandas read it.
"""

from __future__ import annotations

import csv
import json
import math
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
)


class MetricsWriter:
    """Append rows to ``path`` (``.jsonl`` or ``.csv``); use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.suffix not in (".jsonl", ".csv"):
            raise ValueError(f"metrics file {self.path} must end in .jsonl or .csv")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: TextIO = self.path.open("w", newline="")
        self._csv = None
        if self.path.suffix == ".csv":
            self._csv = csv.DictWriter(self._fh, fieldnames=STEP_FIELDS, extrasaction="ignore")
            self._csv.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
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
