"""Tree allreduce: reduce up a tree to its root, then broadcast back down the same tree.

``tree``: a binomial tree rooted at rank 0. Rank v's parent is v with its lowest set bit
cleared; its children are v + 2^k for every 2^k below that bit (all 2^k < p for the root).
The reduction takes the children one after the other, smallest subtree first, reducing each as
it arrives (MPICH's binomial reduce), so the root finishes after D = ceil(lg p) rounds of
receive-and-reduce; the broadcast sends to the largest subtree first and also takes D rounds.
Cost (n bytes): 2D alpha + 2D n beta + D n gamma. Latency like recursive doubling, but each
round moves all n bytes: a small-message algorithm.

``tree_pipelined``: the same tree, with the buffer cut into m segments of ``segment_bytes``
that flow up (and then down) one after the other. Every rank keeps up with the root, which
takes D messages per segment on the way up and sends D on the way down, so the cost is
2Dm alpha + 2D n beta + D n gamma: on one port per rank a binomial tree gains nothing from
segments (the root is the bottleneck), which is why NCCL pipelines binary trees instead
(:mod:`collectives.algorithms.double_tree`). With several ports, as in shared memory, segments
of different levels do move at once.

The engine (``reduce_up`` and ``broadcast_down``) works on a list of trees, each carrying its own
slice of the buffer (:class:`TreeView`); :mod:`collectives.algorithms.double_tree` runs two at
once with it, and the public ``reduce`` and ``broadcast`` building blocks run one.

The root reduces and then broadcasts its bits, so all ranks end bitwise identical.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from collectives.algorithms.chunking import segment_count, segment_elements, segments
from collectives.algorithms.spec import ZERO_COST, Cost
from collectives.ops import ReduceOp
from collectives.transport import Step, Transport

SEGMENT_BYTES = 256 * 1024


@dataclass(frozen=True)
class TreeView:
    """This rank's place in one tree: its slice [lo, hi) of the buffer, parent (-1 at the root), children.

    ``children`` are ordered smallest subtree first: the order a reduction receives them in
    (the first to be ready first); a broadcast serves them in the opposite order.
    """

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


@lru_cache(maxsize=4096)
def pieces(lo: int, hi: int, seg: int) -> tuple[tuple[int, int], ...]:
    """``segments(lo, hi, seg)`` as a tuple, worked out once per call pattern."""
    return tuple(segments(lo, hi, seg))


def reduce_up(
    t: Transport, buf: np.ndarray, op: ReduceOp, trees: Sequence[TreeView], segment: int, preserve: bool = False
) -> Iterator[Step]:
    """Reduce each tree's slice to its root, segment by segment.

    In a tree where this rank is a leaf, every segment goes up at once: nothing to wait for,
    so it never holds up the rank's other tree (the double tree's leaf half). In a tree where
    it has children it takes each segment from one child after the other, smallest subtree
    first, and reduces it as soon as it has arrived (MPICH's binomial reduce), then sends the
    reduced segment up. With ``preserve`` an inner rank accumulates in scratch so its own
    ``buf`` is left unchanged (the public ``reduce``); otherwise it accumulates in ``buf``.
    """
    sends = []
    inner = []
    for tree in trees:
        cuts = pieces(tree.lo, tree.hi, segment)
        if tree.children:
            inner.append((tree, cuts))
        elif tree.parent >= 0:
            sends += [t.isend(buf[a:b], tree.parent, 2 * tree.tag) for a, b in cuts]
    if inner:
        width = max(cuts[0][1] - cuts[0][0] for _, cuts in inner)  # the first segment is the largest
        copies = [tree for tree, _ in inner if preserve and tree.parent >= 0]
        scratch = t.scratch(width + sum(tree.hi - tree.lo for tree in copies), buf.dtype)
        incoming = scratch[:width]
        accumulators = []  # (array, offset of its element 0 in buf)
        offset = width
        for tree, _ in inner:
            if tree in copies:
                acc = scratch[offset : offset + tree.hi - tree.lo]
                offset += tree.hi - tree.lo
                t.copy(acc, buf[tree.lo : tree.hi])
                accumulators.append((acc, tree.lo))
            else:
                accumulators.append((buf, 0))
        for k in range(max(len(cuts) for _, cuts in inner)):
            for (tree, cuts), (acc, base) in zip(inner, accumulators):
                if k >= len(cuts):
                    continue
                a, b = cuts[k]
                mine = acc[a - base : b - base]
                got = incoming[: b - a]
                for child in tree.children:
                    yield t.recv(got, child, 2 * tree.tag)
                    t.reduce(op, mine, got)
                if tree.parent >= 0:
                    sends.append(t.isend(mine, tree.parent, 2 * tree.tag))
    if sends:
        yield t.wait(*sends)


def broadcast_down(t: Transport, buf: np.ndarray, trees: Sequence[TreeView], segment: int) -> Iterator[Step]:
    """Send each tree's slice from its root to every rank of the tree, segment by segment.

    In a tree where this rank is a leaf, the receives for all segments are posted at once and
    waited for at the end. Where it has children, it takes each segment from its parent (the
    receive for the next one posted before waiting) and passes it on, largest subtree first;
    it waits for those sends before passing on the next segment, so a rank's messages leave
    in order (one segment's fan-out never overtakes the previous one's).
    """
    leaves = []
    inner = []
    for tree in trees:
        cuts = pieces(tree.lo, tree.hi, segment)
        down = 2 * tree.tag + 1
        if tree.children:
            first = t.irecv(buf[cuts[0][0] : cuts[0][1]], tree.parent, down) if tree.parent >= 0 else None
            inner.append([tree, cuts, tree.children[::-1], first])
        elif tree.parent >= 0:
            leaves += [t.irecv(buf[a:b], tree.parent, down) for a, b in cuts]
    sends: list = []
    for k in range(max((len(entry[1]) for entry in inner), default=0)):
        if sends:
            yield t.wait(*sends)
            sends = []
        for entry in inner:
            tree, cuts, order, current = entry
            if k >= len(cuts):
                continue
            down = 2 * tree.tag + 1
            if current is not None:
                if k + 1 < len(cuts):
                    a, b = cuts[k + 1]
                    entry[3] = t.irecv(buf[a:b], tree.parent, down)
                yield t.wait(current)
            a, b = cuts[k]
            sends += [t.isend(buf[a:b], c, down) for c in order]
    if sends or leaves:
        yield t.wait(*sends, *leaves)


@lru_cache(maxsize=4096)
def binomial_view(p: int, rank: int, count: int, root: int = 0) -> tuple[TreeView, ...]:
    parent, children = binomial_tree(p, rank, root)
    return (TreeView(0, count, parent, children, 0),)


def tree_allreduce(t: Transport, buf: np.ndarray, op: ReduceOp) -> Iterator[Step]:
    if t.size > 1:
        trees = binomial_view(t.size, t.rank, buf.size)
        whole = max(buf.size, 1)
        yield from reduce_up(t, buf, op, trees, whole)
        yield from broadcast_down(t, buf, trees, whole)


def tree_pipelined_allreduce(
    t: Transport, buf: np.ndarray, op: ReduceOp, segment_bytes: int = SEGMENT_BYTES
) -> Iterator[Step]:
    if t.size > 1:
        trees = binomial_view(t.size, t.rank, buf.size)
        seg = segment_elements(segment_bytes, buf.dtype.itemsize)
        yield from reduce_up(t, buf, op, trees, seg)
        yield from broadcast_down(t, buf, trees, seg)


def binomial_reduce(
    t: Transport, buf: np.ndarray, op: ReduceOp, root: int = 0, segment_bytes: int | None = None
) -> Iterator[Step]:
    """Reduce to ``root`` (result in its ``buf``; other ranks' ``buf`` unchanged); pipelined if ``segment_bytes``."""
    if t.size > 1:
        seg = segment_elements(segment_bytes, buf.dtype.itemsize) if segment_bytes else max(buf.size, 1)
        yield from reduce_up(t, buf, op, binomial_view(t.size, t.rank, buf.size, root), seg, preserve=True)


def binomial_broadcast(
    t: Transport, buf: np.ndarray, root: int = 0, segment_bytes: int | None = None
) -> Iterator[Step]:
    """Copy ``root``'s ``buf`` to every rank; pipelined if ``segment_bytes``."""
    if t.size > 1:
        seg = segment_elements(segment_bytes, buf.dtype.itemsize) if segment_bytes else max(buf.size, 1)
        yield from broadcast_down(t, buf, binomial_view(t.size, t.rank, buf.size, root), seg)


def ceil_lg(p: int) -> int:
    return (p - 1).bit_length()


def _tree_cost(p: int, nbytes: int, itemsize: int, segment_bytes: int | None) -> Cost:
    if p == 1:
        return ZERO_COST
    count = nbytes // itemsize
    n = count * itemsize
    seg = segment_elements(segment_bytes, itemsize) if segment_bytes else max(count, 1)
    m = segment_count(count, seg)
    depth = ceil_lg(p)
    # The root is the bottleneck of both phases: per segment it takes D children's messages one
    # after the other, reducing each (D (alpha + s beta + s gamma)), then sends D (D (alpha + s beta));
    # every other rank keeps up, so nothing else adds to the critical path.
    # The busiest sender is also the root (D children, each sent every segment).
    return Cost(2 * depth * m, 2 * depth * n, depth * n, depth * m, depth * n)


def tree_cost(p: int, nbytes: int, itemsize: int = 1) -> Cost:
    """2D alpha + 2D n beta + D n gamma, D = ceil(lg p)."""
    return _tree_cost(p, nbytes, itemsize, None)


def tree_pipelined_cost(p: int, nbytes: int, itemsize: int = 1, segment_bytes: int = SEGMENT_BYTES) -> Cost:
    """2Dm alpha + 2Dn beta + Dn gamma for m segments: the root handles D messages per segment."""
    return _tree_cost(p, nbytes, itemsize, segment_bytes)
