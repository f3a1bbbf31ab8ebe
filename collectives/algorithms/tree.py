"""Tree allreduce: reduce up a tree to its root, then broadcast back down the same tree.

``tree``: a binomial tree rooted at rank 0. Rank v's parent is v with its lowest set bit
cleared; its children are v + 2^k for every 2^k below that bit (all 2^k < p for the root).
The reduction climbs it in ceil(lg p) rounds, the broadcast descends it in as many.
Cost (D = ceil(lg p), n bytes): 2D alpha + 2D n beta + D n gamma. Latency like recursive
doubling, but each round moves all n bytes: a small-message algorithm.

``tree_pipelined``: the same tree, with the buffer cut into segments of ``segment_bytes`` that
flow up (and then down) one after the other, so every level of the tree works on a different
segment at once. Cost with m segments of s bytes: 2(D + m - 1)(alpha + s beta) + (D + m - 1) s
gamma, which for large n approaches 2 n beta + n gamma plus a pipeline fill of D segments.

The engine (``reduce_up`` and ``broadcast_down``) works on a list of trees, each carrying its own
slice of the buffer (:class:`TreeView`); :mod:`collectives.algorithms.double_tree` runs two at
once with it, and the public ``reduce`` and ``broadcast`` building blocks run one. In each
segment round a rank serves its trees in a fixed order and sends a segment as soon as it is
ready; receives for the next segment are posted before waiting on the current one.

The root reduces and then broadcasts its bits, so all ranks end bitwise identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from collectives.algorithms.chunking import segment_count, segment_elements, segments
from collectives.algorithms.spec import ZERO_COST, Cost
from collectives.ops import ReduceOp
from collectives.transport import Step, Transport

SEGMENT_BYTES = 256 * 1024


@dataclass(frozen=True)
class TreeView:
    """This rank's place in one tree: its slice [lo, hi) of the buffer, parent (-1 at the root), children."""

    lo: int
    hi: int
    parent: int
    children: tuple[int, ...]
    tag: int  # messages of this tree use tags 2*tag (up) and 2*tag+1 (down)


def binomial_tree(p: int, rank: int, root: int = 0) -> tuple[int, tuple[int, ...]]:
    """(parent, children) of ``rank`` in the binomial tree rooted at ``root``; children smallest subtree first."""
    v = (rank - root) % p
    low = v & -v if v else 1 << max(p - 1, 0).bit_length()
    parent = -1 if v == 0 else ((v - low) + root) % p
    children = []
    k = 1
    while k < low and v + k < p:
        children.append((v + k + root) % p)
        k <<= 1
    return parent, tuple(children)


def reduce_up(
    t: Transport, buf: np.ndarray, op: ReduceOp, trees: list[TreeView], segment: int, preserve: bool = False
) -> Iterator[Step]:
    """Reduce each tree's slice to its root, segment by segment.

    With ``preserve`` an inner rank accumulates in scratch so its own ``buf`` is left unchanged
    (the public ``reduce``); otherwise it accumulates in ``buf`` (allreduce overwrites it anyway).
    """
    plans = []
    need = 0
    for tree in trees:
        pieces = segments(tree.lo, tree.hi, segment)
        slots = min(2, len(pieces)) if tree.children else 0
        width = pieces[0][1] - pieces[0][0]
        copy = preserve and tree.parent >= 0 and tree.children
        plans.append((tree, pieces, slots, width, need, copy))
        need += len(tree.children) * slots * width + (tree.hi - tree.lo if copy else 0)
    scratch = t.scratch(need, buf.dtype)

    def acc_of(plan: tuple, a: int, b: int) -> np.ndarray:
        tree, _, slots, width, off, copy = plan
        if not copy:
            return buf[a:b]
        start = off + len(tree.children) * slots * width + (a - tree.lo)
        return scratch[start : start + b - a]

    def slot(plan: tuple, child: int, k: int, length: int) -> np.ndarray:
        _, _, slots, width, off, _ = plan
        start = off + (child * slots + k % slots) * width
        return scratch[start : start + length]

    def post(plan: tuple, k: int) -> list:
        tree, pieces = plan[0], plan[1]
        a, b = pieces[k]
        return [t.irecv(slot(plan, i, k, b - a), c, 2 * tree.tag) for i, c in enumerate(tree.children)]

    for plan in plans:
        if plan[5]:
            t.copy(acc_of(plan, plan[0].lo, plan[0].hi), buf[plan[0].lo : plan[0].hi])
    pending = [post(plan, 0) if plan[0].children else [] for plan in plans]
    sends = []
    for k in range(max(len(plan[1]) for plan in plans)):
        for i, plan in enumerate(plans):
            tree, pieces = plan[0], plan[1]
            if k >= len(pieces):
                continue
            a, b = pieces[k]
            if tree.children:
                current = pending[i]
                if k + 1 < len(pieces):
                    pending[i] = post(plan, k + 1)
                yield t.wait(*current)
                acc = acc_of(plan, a, b)
                for c in range(len(tree.children)):
                    t.reduce(op, acc, slot(plan, c, k, b - a))
            if tree.parent >= 0:
                sends.append(t.isend(acc_of(plan, a, b), tree.parent, 2 * tree.tag))
    if sends:
        yield t.wait(*sends)


def broadcast_down(t: Transport, buf: np.ndarray, trees: list[TreeView], segment: int) -> Iterator[Step]:
    """Send each tree's slice from its root to every rank of the tree, segment by segment."""
    plans = [(tree, segments(tree.lo, tree.hi, segment)) for tree in trees]

    def post(tree: TreeView, piece: tuple[int, int]):
        return t.irecv(buf[piece[0] : piece[1]], tree.parent, 2 * tree.tag + 1)

    pending = [post(tree, pieces[0]) if tree.parent >= 0 else None for tree, pieces in plans]
    sends = []
    for k in range(max(len(pieces) for _, pieces in plans)):
        for i, (tree, pieces) in enumerate(plans):
            if k >= len(pieces):
                continue
            a, b = pieces[k]
            if tree.parent >= 0:
                current = pending[i]
                if k + 1 < len(pieces):
                    pending[i] = post(tree, pieces[k + 1])
                yield t.wait(current)
            for c in tree.children:
                sends.append(t.isend(buf[a:b], c, 2 * tree.tag + 1))
    if sends:
        yield t.wait(*sends)


def _binomial_view(t: Transport, buf: np.ndarray, root: int = 0) -> list[TreeView]:
    parent, children = binomial_tree(t.size, t.rank, root)
    return [TreeView(0, buf.size, parent, children, 0)]


def tree_allreduce(t: Transport, buf: np.ndarray, op: ReduceOp) -> Iterator[Step]:
    if t.size > 1:
        trees = _binomial_view(t, buf)
        whole = max(buf.size, 1)
        yield from reduce_up(t, buf, op, trees, whole)
        yield from broadcast_down(t, buf, trees, whole)


def tree_pipelined_allreduce(
    t: Transport, buf: np.ndarray, op: ReduceOp, segment_bytes: int = SEGMENT_BYTES
) -> Iterator[Step]:
    if t.size > 1:
        trees = _binomial_view(t, buf)
        seg = segment_elements(segment_bytes, buf.dtype.itemsize)
        yield from reduce_up(t, buf, op, trees, seg)
        yield from broadcast_down(t, buf, trees, seg)


def binomial_reduce(
    t: Transport, buf: np.ndarray, op: ReduceOp, root: int = 0, segment_bytes: int | None = None
) -> Iterator[Step]:
    """Reduce to ``root`` (result in its ``buf``; other ranks' ``buf`` unchanged); pipelined if ``segment_bytes``."""
    if t.size > 1:
        seg = segment_elements(segment_bytes, buf.dtype.itemsize) if segment_bytes else max(buf.size, 1)
        yield from reduce_up(t, buf, op, _binomial_view(t, buf, root), seg, preserve=True)


def binomial_broadcast(
    t: Transport, buf: np.ndarray, root: int = 0, segment_bytes: int | None = None
) -> Iterator[Step]:
    """Copy ``root``'s ``buf`` to every rank; pipelined if ``segment_bytes``."""
    if t.size > 1:
        seg = segment_elements(segment_bytes, buf.dtype.itemsize) if segment_bytes else max(buf.size, 1)
        yield from broadcast_down(t, buf, _binomial_view(t, buf, root), seg)


def ceil_lg(p: int) -> int:
    return (p - 1).bit_length()


def _tree_cost(p: int, nbytes: int, itemsize: int, segment_bytes: int | None) -> Cost:
    if p == 1:
        return ZERO_COST
    count = nbytes // itemsize
    n = count * itemsize
    seg = segment_elements(segment_bytes, itemsize) if segment_bytes else max(count, 1)
    m = segment_count(count, seg)
    s = min(seg, count) * itemsize  # bytes of the largest segment
    depth = ceil_lg(p)
    rounds = depth + m - 1
    # The busiest rank is the root (ceil(lg p) children, each sent every segment) in a binomial tree.
    messages = depth * m
    sent = depth * n
    return Cost(2 * rounds, 2 * rounds * s, rounds * s, messages, sent)


def tree_cost(p: int, nbytes: int, itemsize: int = 1) -> Cost:
    """2D alpha + 2D n beta + D n gamma, D = ceil(lg p)."""
    return _tree_cost(p, nbytes, itemsize, None)


def tree_pipelined_cost(p: int, nbytes: int, itemsize: int = 1, segment_bytes: int = SEGMENT_BYTES) -> Cost:
    """2(D + m - 1)(alpha + s beta) + (D + m - 1) s gamma for m segments of s bytes."""
    return _tree_cost(p, nbytes, itemsize, segment_bytes)
