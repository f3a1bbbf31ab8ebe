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

A plan depends on the algorithm registry and on the selection model (``algorithm="auto"``).
Both count their changes (``collectives.algorithms.version``, ``collectives.select.model_version``);
a cache remembers the counts it was filled under and :func:`current` empties it when they moved,
so neither the registry nor the selector needs to know that plans exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from collectives import algorithms, select
from collectives.ops import ReduceOp
from collectives.prepare import Call, exchange_for

if TYPE_CHECKING:
    from collectives.context import CommContext


class Plan(NamedTuple):
    """What one validated allreduce call needs at run time."""

    run: Any  # the algorithm's generator function (after resolving "auto")
    op: ReduceOp
    average: bool  # the op divides by p at the end
    exchange: Any  # the call's check, an agreement.Exchange (None on one rank); may carry out the allreduce


class PlanCache(dict):
    """Plans of one communicator, keyed by (algorithm, op, dtype, element count), as passed.

    ``registry`` and ``model`` are the versions of the registry and the selection model the
    plans were made under; :func:`current` checks them. A program that makes ever new calls (a
    sweep over sizes) would grow the cache without end, so it starts over once it holds
    ``LIMIT`` plans; a training loop's few calls refill it at once.
    """

    LIMIT = 256
    registry = -1
    model = -1

    def __setitem__(self, key: Any, plan: Plan) -> None:
        if len(self) >= self.LIMIT:
            self.clear()
        old = self.get(key)
        if old is not None and _exchange(old) is not _exchange(plan):
            _release(old)
        super().__setitem__(key, plan)

    def clear(self) -> None:
        """Forget every plan, freeing their exchanges' persistent sends."""
        for plan in self.values():
            _release(plan)
        super().clear()


def _exchange(plan: Any) -> Any:
    return getattr(plan, "exchange", None)


def _release(plan: Any) -> None:
    exchange = _exchange(plan)
    if exchange is not None:
        exchange.release()


def current(cache: PlanCache) -> PlanCache:
    """``cache``, emptied first if the registry or the selection model changed since it was filled."""
    if cache.registry != algorithms.version or cache.model != select.model_version:
        cache.clear()
        cache.registry, cache.model = algorithms.version, select.model_version
    return cache


def make_plan(ctx: CommContext, call: Call, op: Any, algorithm: Any) -> Plan:
    """The plan of an allreduce call that has just been validated (and agreed on, if checked)."""
    exchange = call.exchange
    if exchange is None and ctx.size > 1:  # the call was unchecked; a later one may not be
        exchange = exchange_for("allreduce", ctx, call, op, algorithm, 0, fuse=True)
    if exchange is not None:
        exchange.persist()  # a plan's exchange runs every time the call is made again
    return Plan(call.run, call.op, call.op.average, exchange)
