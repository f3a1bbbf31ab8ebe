"""Double binary tree allreduce (NCCL's): two complementary trees, each carrying half the data.

A single binary tree wastes half the machine's bandwidth: its leaves (about half the ranks)
only ever send up and receive down once. NCCL builds a second tree in which those leaves are
inner ranks, and gives each tree half the buffer. Both halves are reduced up and broadcast down
at the same time, in segments, so every rank forwards data in one of the trees: where a rank is
a leaf, all its segments go up (and come down) at once, so that tree never waits for the
other (:func:`collectives.algorithms.tree.reduce_up`). On two ranks this is the ring: each
rank reduces one half and sends it back.

Tree 0 (``binary_tree``, NCCL's ``ncclGetBtree``): an in-order binary tree on ranks 0..p-1
whose inner ranks are the ones with a low set bit of 2^k, k >= 1; rank 0 hangs off the top.
Tree 1 (``ncclGetDtree``): tree 0 mirrored (rank r -> p-1-r) when p is even, shifted by one
(r -> r+1 mod p) when p is odd, which makes tree 0's leaves inner ranks of tree 1 and back.

Cost for p a power of two, one segment of n/2 bytes per tree: (2 lg p - 1)(2 alpha + n beta +
n/2 gamma); every further segment of s bytes adds 2 (2 alpha + 2 s beta + s gamma), since a
rank takes its two children's segments one after the other (``double_tree_cost``).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from collectives.algorithms.chunking import segment_count, segment_elements, segments
from collectives.algorithms.spec import ZERO_COST, Cost
from collectives.algorithms.tree import TreeView, broadcast_down, reduce_up
from collectives.ops import ReduceOp
from collectives.transport import Step, Transport

SEGMENT_BYTES = 256 * 1024

Shape = tuple[int, tuple[int, ...]]  # (parent or -1, children)


def binary_tree(p: int, rank: int) -> Shape:
    """NCCL's ``ncclGetBtree``: (parent, children) of ``rank``, the smaller subtree first.

    NCCL lists the children as (rank - low, rank + low); the right one's subtree is cut off at
    p, so it is never the larger, and a reduction that takes it first waits least.
    """
    bit = 1
    while bit < p and not bit & rank:
        bit <<= 1
    if rank == 0:
        return -1, ((bit >> 1,) if p > 1 else ())
    up = (rank ^ bit) | (bit << 1)
    if up >= p:
        up = rank ^ bit
    low = bit >> 1
    children = []
    if low:
        children.append(rank - low)
        down1 = rank + low
        while down1 >= p:
            low >>= 1
            down1 = rank + low if low else -1
        if down1 >= 0:
            children.append(down1)
    return up, tuple(reversed(children))


def double_binary_trees(p: int, rank: int) -> list[Shape]:
    """This rank's (parent, children) in NCCL's two complementary trees."""
    first = binary_tree(p, rank)
    if p % 2:  # shift by one
        parent, children = binary_tree(p, (rank - 1) % p)
        second = ((parent + 1) % p if parent >= 0 else -1, tuple((c + 1) % p for c in children))
    else:  # mirror
        parent, children = binary_tree(p, p - 1 - rank)
        second = (p - 1 - parent if parent >= 0 else -1, tuple(p - 1 - c for c in children))
    return [first, second]


@lru_cache(maxsize=4096)
def views(p: int, rank: int, count: int) -> tuple[TreeView, TreeView]:
    """This rank's place in both trees; tree 0 carries the first half of the buffer, tree 1 the rest."""
    half = (count + 1) // 2
    (p0, c0), (p1, c1) = double_binary_trees(p, rank)
    return TreeView(0, half, p0, c0, 0), TreeView(half, count, p1, c1, 1)


def double_tree_allreduce(
    t: Transport, buf: np.ndarray, op: ReduceOp, segment_bytes: int = SEGMENT_BYTES
) -> Iterator[Step]:
    if t.size > 1:
        trees = views(t.size, t.rank, buf.size)
        seg = segment_elements(segment_bytes, buf.dtype.itemsize)
        yield from reduce_up(t, buf, op, trees, seg)
        yield from broadcast_down(t, buf, trees, seg)


@lru_cache(maxsize=64)
def _shapes(p: int) -> tuple[list[tuple[int, tuple[int, ...]]], list[tuple[int, tuple[int, ...]]]]:
    """Every rank's (parent, children) in tree 0 and in tree 1."""
    both = [double_binary_trees(p, r) for r in range(p)]
    return [b[0] for b in both], [b[1] for b in both]


def _bottom_up(shape: list[tuple[int, tuple[int, ...]]]) -> list[int]:
    """The ranks of one tree, every child before its parent."""
    root = next(r for r, (parent, _) in enumerate(shape) if parent < 0)
    order, stack = [], [root]
    while stack:
        v = stack.pop()
        order.append(v)
        stack.extend(shape[v][1])
    return order[::-1]


def tree_time(shape: list[tuple[int, tuple[int, ...]]], sizes: list[int], alpha: float, beta: float, gamma: float):
    """Time of :func:`reduce_up` then :func:`broadcast_down` on one tree alone, segments ``sizes`` (bytes).

    The recurrences follow the code: a rank takes segment k from its children one after the
    other (smallest subtree first), reducing each, once it has finished segment k-1; the root
    then passes every segment down, each rank sending segment k to its children (largest
    subtree first) once it has it and its sends of segment k-1 have been delivered. Used for
    one segment by :func:`_tree_facts` and, in the tests, to check the closed form.
    """
    order = _bottom_up(shape)
    ts = [alpha + s * beta for s in sizes]
    gs = [s * gamma for s in sizes]
    ready: dict[int, list[float]] = {}
    for v in order:
        children = shape[v][1]
        done, t = [], 0.0
        for k in range(len(sizes)):
            for c in children:
                t = max(t, ready[c][k]) + ts[k] + gs[k]
            done.append(t)
        ready[v] = done
    root = order[-1]
    m = len(sizes)
    have: dict[int, list[float]] = {v: [] for v in order}  # when a rank has segment k
    have[root] = [ready[root][-1]] * m
    sent: dict[int, list[float]] = {v: [] for v in order}  # when its sends of segment k are delivered
    for k in range(m):
        for v in order[::-1]:  # parents before children
            free = max(have[v][k], sent[v][k - 1] if k else 0.0)
            for c in shape[v][1][::-1]:  # largest subtree first
                free += ts[k]
                have[c].append(free)
            sent[v].append(free)
    return max(max(have[v][-1], sent[v][-1]) for v in order)


@lru_cache(maxsize=256)
def _tree_facts(p: int) -> tuple[int, int, int, frozenset[tuple[int, int]]]:
    """(c, d, q, degrees) of NCCL's trees on p ranks (both trees are alike: mirrored or shifted).

    One segment takes c (alpha + s beta + s gamma) up the tree and d (alpha + s beta) down;
    every further segment adds q (2 alpha + 2 s beta + s gamma), q = the most children a rank has.
    ``degrees`` are the distinct pairs (sends per segment in tree 0, in tree 1) over ranks.
    """
    shape = _shapes(p)[0]
    c = round(tree_time(shape, [1], 0.0, 0.0, 1.0))
    d = round(tree_time(shape, [1], 1.0, 0.0, 0.0)) - c
    q = max(len(children) for _, children in shape)
    degrees = frozenset(
        tuple((parent >= 0) + len(children) for parent, children in double_binary_trees(p, r)) for r in range(p)
    )
    return c, d, q, degrees


def double_tree_cost(p: int, nbytes: int, itemsize: int = 1, segment_bytes: int = SEGMENT_BYTES) -> Cost:
    """(c + d) alpha + (c + d) s beta + c s gamma + (m - 1) q (2 alpha + 2 s beta + s gamma).

    The two trees run side by side, tree 0 with the larger half; for its m segments of s bytes
    the critical path is the first segment's way up (c steps, each a transfer and a reduction)
    and down (d transfers), then q more of both per further segment, q the most children a
    rank has (:func:`_tree_facts`). For p a power of two, c = d = 2 lg p - 1.

    Exact for one segment on even p with halves of equal size. The formula treats the trees as
    independent; they share each rank's ports, which makes the simulation up to 3% slower with
    the default segments on p <= 16 (more with many tiny segments). On odd p the shifted tree
    makes some ranks inner in both trees, which then also share one rank's time: the
    simulation takes up to 40% longer than this formula there.
    """
    if p == 1:
        return ZERO_COST
    count = nbytes // itemsize
    half = (count + 1) // 2
    seg = segment_elements(segment_bytes, itemsize)
    c, d, q, degrees = _tree_facts(p)
    m0, m1 = segment_count(half, seg), segment_count(count - half, seg)
    messages = max(d0 * m0 + d1 * m1 for d0, d1 in degrees)
    sent = max(d0 * half + d1 * (count - half) for d0, d1 in degrees)
    sizes = [(b - a) * itemsize for a, b in segments(0, half, seg)]
    first, rest = sizes[0], sum(sizes[1:])
    return Cost(
        (c + d) + 2 * q * (m0 - 1),
        (c + d) * first + 2 * q * rest,
        c * first + q * rest,
        messages,
        sent * itemsize,
    )
