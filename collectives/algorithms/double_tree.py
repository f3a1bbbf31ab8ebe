"""Double binary tree allreduce (NCCL's): two complementary trees, each carrying half the data.

A single binary tree wastes half the machine's bandwidth: its leaves (about half the ranks)
only ever send up and receive down once. NCCL builds a second tree in which those leaves are
inner ranks, and gives each tree half the buffer. Both halves are reduced up and broadcast down
at the same time, in segments, so every rank forwards data in one of the trees.

Tree 0 (``binary_tree``, NCCL's ``ncclGetBtree``): an in-order binary tree on ranks 0..p-1
whose inner ranks are the ones with a low set bit of 2^k, k >= 1; rank 0 hangs off the top.
Tree 1 (``ncclGetDtree``): tree 0 mirrored (rank r -> p-1-r) when p is even, shifted by one
(r -> r+1 mod p) when p is odd, which makes tree 0's leaves inner ranks of tree 1 and back.

Cost with D = tree depth and m segments of s bytes per half: 2(D + m - 1)(alpha + s beta) +
(D + m - 1) s gamma, about n beta + n/2 gamma for large n, since each tree moves half the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from collectives.algorithms.chunking import segment_count, segment_elements
from collectives.algorithms.spec import ZERO_COST, Cost
from collectives.algorithms.tree import TreeView, broadcast_down, reduce_up
from collectives.ops import ReduceOp
from collectives.transport import Step, Transport

SEGMENT_BYTES = 256 * 1024

Shape = tuple[int, tuple[int, ...]]  # (parent or -1, children)


def binary_tree(p: int, rank: int) -> Shape:
    """NCCL's ``ncclGetBtree``: (parent, children) of ``rank``."""
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
    return up, tuple(children)


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


def _views(t: Transport, buf: np.ndarray) -> list[TreeView]:
    half = (buf.size + 1) // 2
    (p0, c0), (p1, c1) = double_binary_trees(t.size, t.rank)
    return [TreeView(0, half, p0, c0, 0), TreeView(half, buf.size, p1, c1, 1)]


def double_tree_allreduce(
    t: Transport, buf: np.ndarray, op: ReduceOp, segment_bytes: int = SEGMENT_BYTES
) -> Iterator[Step]:
    if t.size > 1:
        trees = _views(t, buf)
        seg = segment_elements(segment_bytes, buf.dtype.itemsize)
        yield from reduce_up(t, buf, op, trees, seg)
        yield from broadcast_down(t, buf, trees, seg)


def tree_depth(p: int, shape_of) -> int:
    """Edges on the longest root-to-leaf path of the tree given by ``shape_of(rank)``."""
    depth = 0
    for r in range(p):
        d, x = 0, r
        while (x := shape_of(x)[0]) >= 0:
            d += 1
        depth = max(depth, d)
    return depth


@lru_cache(maxsize=256)
def _shape_facts(p: int) -> tuple[int, frozenset[tuple[int, int]]]:
    """(depth of the deeper tree, the distinct pairs (sends per segment in tree 0, in tree 1) over ranks)."""
    depth = max(tree_depth(p, lambda r, i=i: double_binary_trees(p, r)[i]) for i in (0, 1))
    degrees = frozenset(
        tuple((parent >= 0) + len(children) for parent, children in double_binary_trees(p, r)) for r in range(p)
    )
    return depth, degrees


def double_tree_cost(p: int, nbytes: int, itemsize: int = 1, segment_bytes: int = SEGMENT_BYTES) -> Cost:
    """2(D + m - 1)(alpha + s beta) + (D + m - 1) s gamma, halves of n/2 in m segments of s bytes."""
    if p == 1:
        return ZERO_COST
    count = nbytes // itemsize
    half = (count + 1) // 2
    seg = segment_elements(segment_bytes, itemsize)
    m0, m1 = segment_count(half, seg), segment_count(count - half, seg)
    depth, degrees = _shape_facts(p)
    messages = max(d0 * m0 + d1 * m1 for d0, d1 in degrees)
    sent = max(d0 * half + d1 * (count - half) for d0, d1 in degrees)
    s = min(seg, half) * itemsize
    rounds = depth + m0 - 1
    return Cost(2 * rounds, 2 * rounds * s, rounds * s, messages, sent * itemsize)
