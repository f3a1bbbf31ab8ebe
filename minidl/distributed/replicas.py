"""Are the replicas the same model? Their layout is compared at construction, their bits on demand.

Data parallelism assumes every rank holds the same parameters; if one rank builds a different
model, the first broadcast or allreduce fails with an obscure size error on one rank and a hang on
the others. Comparing a hash of the layout (names, shapes, dtypes) costs one allreduce of two
integers; only when the hashes differ do the ranks exchange the layouts themselves, so that every
rank can say which tensor differs on which rank.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from minidl.distributed import comm as dist

Entry = tuple[str, str, tuple[int, ...], str]  # (kind, name, shape, dtype)


def layout(named: Iterable[tuple[str, str, np.ndarray]]) -> list[Entry]:
    """(kind, name, shape, dtype name) of each ``(kind, name, array)``."""
    return [(kind, name, tuple(int(n) for n in arr.shape), arr.dtype.name) for kind, name, arr in named]


def check_same_layout(entries: list[Entry], comm: Any, who: str) -> None:
    """Raise ``ValueError`` on every rank, naming the tensor and the rank, unless all ranks' layouts agree."""
    digest = hashlib.sha256(repr(entries).encode()).digest()[:8]
    mine = np.frombuffer(digest, dtype=np.uint64)[0]
    extremes = np.array([mine, ~mine], dtype=np.uint64)  # max of ~h is ~(min of h): one message for both
    dist.all_reduce(extremes, "max", comm=comm)
    if extremes[0] == ~extremes[1]:  # the largest hash equals the smallest: every rank has the same layout
        return
    layouts = comm.allgather(entries)  # only after a mismatch, once: a small pickle is fine here
    raise ValueError(f"{who}: the ranks hold different models: {describe_differences(layouts)}")


def describe_differences(layouts: list[list[Entry]], limit: int = 3) -> str:
    """The first difference of each rank's layout from rank 0's, for up to ``limit`` ranks."""
    reference = {(kind, name): (shape, dtype) for kind, name, shape, dtype in layouts[0]}
    found = []
    for rank, entries in enumerate(layouts[1:], start=1):
        if entries == layouts[0]:
            continue
        found.append(_first_difference(rank, entries, reference, layouts[0]))
        if len(found) == limit:
            break
    return "; ".join(found)


def _first_difference(rank: int, entries: list[Entry], reference: dict, reference_entries: list[Entry]) -> str:
    mine = {(kind, name): (shape, dtype) for kind, name, shape, dtype in entries}
    for kind, name, shape, dtype in entries:
        if (kind, name) not in reference:
            return f"{kind} {name!r} exists on rank {rank} but not on rank 0"
        if reference[kind, name] != (shape, dtype):
            ref_shape, ref_dtype = reference[kind, name]
            return f"{kind} {name!r} is {shape} {dtype} on rank {rank} but {ref_shape} {ref_dtype} on rank 0"
    for kind, name, _, _ in reference_entries:
        if (kind, name) not in mine:
            return f"{kind} {name!r} exists on rank 0 but not on rank {rank}"
    return f"rank {rank} registers the same tensors as rank 0 in a different order"


def checksum(arr: np.ndarray) -> int:
    """An exact checksum of the bits (any drift, even in the last bit, changes it)."""
    raw = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    pad = (-raw.size) % 8
    if pad:
        raw = np.concatenate([raw, np.zeros(pad, np.uint8)])
    words = raw.view(np.uint64)
    weights = np.arange(1, words.size + 1, dtype=np.uint64)  # position-sensitive
    with np.errstate(over="ignore"):
        return int((words * weights).sum(dtype=np.uint64))
