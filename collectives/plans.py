"""Validated allreduce calls, remembered per communicator so that a repeated call skips its checks.

Small messages are all per-call overhead: an allreduce of a few bytes costs MPI about 2 us, and
validating the arguments, looking up the op and the algorithm, and building the cross-rank
signature cost as much again in Python. A training loop makes the same call over and over, so
``collectives.allreduce`` does that work once per (algorithm, op, dtype, element count) and
keeps the result, a :class:`Plan`, in the communicator's :class:`PlanCache`. The shape does not
matter (buffers are reduced as flat arrays); the hot path itself checks the two properties
that can differ between buffers of one key, that the buffer is writable and contiguous, and
sends read-only or non-contiguous buffers, and anything that is not exactly a numpy array,
down the full path with its errors.

A plan depends on the algorithm registry and on the selection model (``algorithm="auto"``), so
:func:`invalidate` drops every cached plan when either changes.
"""

from __future__ import annotations

import weakref
from typing import Any, NamedTuple

import numpy as np

from collectives.ops import ReduceOp


class Plan(NamedTuple):
    """What one validated allreduce call needs at run time."""

    run: Any  # the algorithm's generator function (after resolving "auto")
    op: ReduceOp
    average: bool  # the op divides by p at the end
    exchange: Any  # combines this call's signature across ranks (None: no check on one rank)
    combined: np.ndarray | None  # where ``exchange`` writes the combined signature
    expected: bytes  # the combined signature when every rank made this same call
    names: dict[str, str]  # for the mismatch error message


class PlanCache(dict):
    """Plans of one communicator, keyed by (algorithm, op, dtype, element count), as passed."""


_caches: weakref.WeakValueDictionary[int, PlanCache] = weakref.WeakValueDictionary()  # id -> cache


def new_cache() -> PlanCache:
    cache = PlanCache()
    _caches[id(cache)] = cache
    return cache


def invalidate() -> None:
    """Forget every cached plan (the registry or the selection model changed)."""
    for cache in list(_caches.values()):
        cache.clear()
