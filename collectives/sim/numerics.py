"""Which order each algorithm adds in, what rounding error that order allows, and what it gives.

Different allreduce algorithms add the same p numbers in different orders, so in floating point
they give different bits ("the loss differs between backends"). Here an algorithm runs once on
virtual ranks with a :class:`TreePayload`: every element holds the id of an expression node, and
each ``t.reduce`` creates new nodes (left = the element it reduced into, right = the incoming one).
Rank 0's output element i is then the root of the reduction tree that element gets.

From the tree: the depth d_j of each leaf (how many roundings its value goes through), and the
classic bound for recursive summation (Higham, *Accuracy and Stability of Numerical Algorithms*,
sec. 4.2): |computed - exact| <= sum_j gamma(d_j) |x_j|, gamma(k) = k u / (1 - k u), u = eps/2,
so at most gamma(depth) * sum|x|. The measured error replays the tree on data (numpy, in the dtype,
the same additions in the same order as the algorithm; the tests check the replay matches a real
run bit for bit) and takes |computed - exact sum| exactly: ``math.fsum`` of the computed value and
the negated inputs, rounded once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from collectives.ops import get_op
from collectives.sim.payload import RealPayload
from collectives.sim.scheduler import Simulator
from collectives.sim.simulate import AlgorithmLike, resolve

DATA_KINDS = ("random", "mixed", "cancel")
ID_TYPES = {2: np.int16, 4: np.int32, 8: np.int64}  # node ids as wide as the data: the same byte-based chunking


class TreePayload(RealPayload):
    """Buffers hold expression-node ids; a reduce records ``new = inout + incoming`` for every element.

    Leaves are ``rank * n + i`` (rank's input element i). Nodes are created in batches, one per
    ``t.reduce`` call, in the order the simulation runs them, which is an order the real run may
    take too: replaying batches in creation order computes every node after its children.
    """

    name = "tree"

    def __init__(self, leaves: int, id_type: Any) -> None:
        self.next_id = leaves
        self.id_type = np.dtype(id_type)
        self.batches: list[tuple[int, np.ndarray, np.ndarray]] = []

    def scratch(self, rank: int, n: int, dtype: Any) -> np.ndarray:
        return np.full(n, -1, self.id_type)  # -1: never written; a tree reading it is reported as broken

    def reduce(self, rank: int, op: Any, inout: np.ndarray, incoming: np.ndarray) -> None:
        if inout.size != incoming.size:
            super().reduce(rank, op, inout, incoming)  # raises the simulator's size error
        ids = np.arange(self.next_id, self.next_id + inout.size, dtype=np.int64)
        if ids.size and ids[-1] > np.iinfo(self.id_type).max:
            raise OverflowError(f"{ids[-1]} expression nodes do not fit {self.id_type} ids; use fewer elements")
        self.batches.append((self.next_id, inout.astype(np.int64), incoming.astype(np.int64)))
        self.next_id += inout.size
        inout[:] = ids


@dataclass
class Trees:
    """The reduction trees of one algorithm's run: node ``k >= leaves`` is ``left[k'] + right[k']``."""

    algorithm: str
    p: int
    n: int
    left: np.ndarray  # indexed by node id - leaves
    right: np.ndarray
    batches: list[tuple[int, int]]  # (first node id, count), in creation order
    roots: np.ndarray  # rank 0's output: the root node of element i

    @property
    def leaves(self) -> int:
        return self.p * self.n

    def children(self, node: int) -> tuple[int, int] | None:
        if node < self.leaves:
            return None
        k = node - self.leaves
        return int(self.left[k]), int(self.right[k])

    def leaf_depths(self, element: int) -> dict[int, int]:
        """{rank: additions between that rank's input and the output} for one element (every rank once)."""
        depths: dict[int, int] = {}
        stack = [(int(self.roots[element]), 0)]
        while stack:
            node, d = stack.pop()
            if node < 0:
                raise ValueError(f"{self.algorithm}: element {element} reads data that was never written")
            kids = self.children(node)
            if kids is None:
                rank = node // self.n
                if rank in depths:
                    raise ValueError(f"{self.algorithm}: element {element} counts rank {rank} twice")
                depths[rank] = d
            else:
                stack.extend((k, d + 1) for k in kids)
        if len(depths) != self.p:
            raise ValueError(f"{self.algorithm}: element {element} holds {len(depths)} of {self.p} ranks")
        return depths

    def depth_matrix(self) -> np.ndarray:
        """(n, p) array: additions between rank r's input element i and output element i, for every i."""
        # Vectorised over elements: walk all roots down level by level.
        depth = np.zeros((self.n, self.p), np.int64)
        frontier = [(self.roots.astype(np.int64), np.arange(self.n), 0)]
        while frontier:
            nodes, elems, d = frontier.pop()
            if (nodes < 0).any():
                raise ValueError(f"{self.algorithm}: an output element reads data that was never written")
            leaf = nodes < self.leaves
            depth[elems[leaf], nodes[leaf] // self.n] = d
            inner, ie = nodes[~leaf] - self.leaves, elems[~leaf]
            if inner.size:
                frontier.append((self.left[inner], ie, d + 1))
                frontier.append((self.right[inner], ie, d + 1))
        return depth

    def expression(self, element: int) -> str:
        """The sum for one element as nested brackets of ranks, children in a canonical order (``+`` commutes)."""

        def walk(node: int) -> tuple[int, str]:
            kids = self.children(node)
            if kids is None:
                return node // self.n, f"x{node // self.n}"
            a, b = sorted(walk(k) for k in kids)
            return a[0], f"({a[1]} + {b[1]})"

        return walk(int(self.roots[element]))[1]

    def drawing(self, element: int) -> str:
        """The tree of one element as indented text, root first; leaves are the ranks' inputs."""
        lines: list[str] = []

        def walk(node: int, prefix: str, last: bool, top: bool) -> None:
            kids = self.children(node)
            label = f"x{node // self.n}" if kids is None else "+"
            lines.append(label if top else f"{prefix}{'`-- ' if last else '|-- '}{label}")
            if kids is not None:
                sub = prefix if top else prefix + ("    " if last else "|   ")
                first, second = sorted(kids, key=lambda k: self.min_leaf(k))
                walk(first, sub, False, False)
                walk(second, sub, True, False)

        walk(int(self.roots[element]), "", True, True)
        return "\n".join(lines)

    def min_leaf(self, node: int) -> int:
        while (kids := self.children(node)) is not None:
            node = min(kids)
        return node // self.n

    def replay(self, inputs: np.ndarray) -> np.ndarray:
        """Rank 0's output for ``inputs`` of shape (p, n, trials): the algorithm's additions, in its order."""
        p, n = self.p, self.n
        vals = np.empty((self.leaves + self.left.size, *inputs.shape[2:]), inputs.dtype)
        vals[: self.leaves] = inputs.reshape(p * n, *inputs.shape[2:])
        for first, count in self.batches:
            k = first - self.leaves
            np.add(vals[self.left[k : k + count]], vals[self.right[k : k + count]], out=vals[first : first + count])
        return vals[self.roots]


def reduction_trees(algorithm: AlgorithmLike, p: int, n: int, dtype: Any = np.float32) -> Trees:
    """Run ``algorithm`` on ``p`` virtual ranks of ``n`` elements of ``dtype`` and return its trees."""
    name, run, _ = resolve(algorithm)
    itemsize = np.dtype(dtype).itemsize
    if itemsize not in ID_TYPES:
        raise ValueError(f"numerics: dtype {np.dtype(dtype)} has no integer type of its width for node ids")
    payload = TreePayload(p * n, ID_TYPES[itemsize])
    buffers = [np.arange(r * n, (r + 1) * n, dtype=payload.id_type) for r in range(p)]
    Simulator(p, payload).run(run, buffers, get_op("sum"))
    left = np.concatenate([b[1] for b in payload.batches]) if payload.batches else np.zeros(0, np.int64)
    right = np.concatenate([b[2] for b in payload.batches]) if payload.batches else np.zeros(0, np.int64)
    batches = [(first, len(lo)) for first, lo, _ in payload.batches]
    return Trees(name, p, n, left, right, batches, buffers[0].astype(np.int64))


def make_data(kind: str, p: int, n: int, trials: int, dtype: Any, seed: int = 0) -> np.ndarray:
    """(p, n, trials) inputs. random: standard normal; mixed: random signs and magnitudes 1e-4..1e4;
    cancel: ranks 0, 4, 8, ... hold about 1e8 and ranks 2, 6, ... its negative; the others standard normal:
    the exact sum is the small values', which an order adding them to a big partial sum loses."""
    rng = np.random.default_rng(seed)
    shape = (p, n, trials)
    if kind == "random":
        x = rng.standard_normal(shape)
    elif kind == "mixed":
        x = rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(-4, 4, shape)
    elif kind == "cancel":  # big values that cancel exactly, and small ones an early big partial sum absorbs
        x = rng.standard_normal(shape)
        big = 1e8 * (1 + rng.uniform(0, 1, shape))
        x[0::4] = big[0::4]
        x[2::4] = -x[0::4][: x[2::4].shape[0]]
    else:
        raise ValueError(f"numerics: unknown data {kind!r}; expected one of {DATA_KINDS}")
    return x.astype(dtype)


def exact_sums(inputs: np.ndarray) -> np.ndarray:
    """Per (element, trial): the exact sum of the p inputs, rounded once to float64 (``math.fsum``)."""
    p = inputs.shape[0]
    cols = inputs.astype(np.float64).reshape(p, -1).T
    return np.array([math.fsum(c) for c in cols]).reshape(inputs.shape[1:])


def exact_errors(inputs: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Per (element, trial): |got - exact sum|, the difference itself computed exactly and rounded once."""
    p = inputs.shape[0]
    terms = np.concatenate([got.astype(np.float64)[None], -inputs.astype(np.float64)]).reshape(p + 1, -1).T
    return np.abs(np.array([math.fsum(c) for c in terms])).reshape(inputs.shape[1:])


def gamma(k: np.ndarray | int, dtype: Any) -> np.ndarray:
    """Higham's gamma_k = k u / (1 - k u), u the unit roundoff of ``dtype`` (eps / 2)."""
    u = float(np.finfo(dtype).eps) / 2
    k = np.asarray(k, np.float64)
    return k * u / (1 - k * u)


@dataclass
class Row:
    """One line of the numerics table."""

    algorithm: str
    p: int
    dtype: str
    depth: int  # the deepest leaf over all elements: additions one input goes through
    min_depth: int  # the shallowest
    gamma_depth: float  # gamma(depth): bound on |error| / sum|x|, whatever the data
    errors: dict[str, float]  # data kind -> max over elements and trials of |error| / sum|x|
    bound_ratio: dict[str, float]  # data kind -> max of |error| / (that element's per-leaf bound)
    ulps: dict[str, float]  # data kind -> max |error| in units of the exact sum's ulp in dtype


def measure(
    algorithm: AlgorithmLike, p: int, dtype: Any = np.float32, n: int | None = None, trials: int = 8, seed: int = 0
) -> Row:
    """The table row for one algorithm, rank count and dtype (``n`` defaults to p elements, one per chunk)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"numerics: dtype {dtype} is not supported; expected float32 or float64")
    n = n or max(p, 8)
    trees = reduction_trees(algorithm, p, n, dtype)
    depth = trees.depth_matrix()  # (n, p)
    g = gamma(depth, dtype)
    errors, ratios, ulps = {}, {}, {}
    for kind in DATA_KINDS:
        x = make_data(kind, p, n, trials, dtype, seed)
        exact = exact_sums(x)
        err = exact_errors(x, trees.replay(x))
        mag = np.abs(x.astype(np.float64)).sum(axis=0)
        bound = np.einsum("np,pnt->nt", g, np.abs(x.astype(np.float64)))
        errors[kind] = float(np.max(err / np.where(mag > 0, mag, 1)))
        ratios[kind] = float(
            np.max(np.where(bound > 0, err / np.where(bound > 0, bound, 1), np.where(err > 0, np.inf, 0)))
        )
        ulp = np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)
        ulps[kind] = float(np.max(err / ulp))
    return Row(trees.algorithm, p, dtype.name, int(depth.max()), int(depth.min()), float(gamma(depth.max(), dtype)),
               errors, ratios, ulps)  # fmt: skip


def table(rows: list[Row]) -> str:
    """The rows as text: depth, bound and the measured errors per data kind."""
    head = f"{'algorithm':<20}{'p':>6} {'dtype':<8}{'depth':>9} {'bound':>9} " + " ".join(
        f"{k + ' err':>12} {'ulps':>6}" for k in DATA_KINDS
    )
    lines = [
        "error = max |computed - exact| / sum|x| over elements and trials; bound = gamma(depth) = depth*u/(1-depth*u);",
        "ulps = max |computed - exact| in ulps of the exactly rounded sum; depth = fewest..most additions per input",
        head,
    ]
    for r in rows:
        lines.append(
            f"{r.algorithm:<20}{r.p:>6} {r.dtype:<8}{f'{r.min_depth}..{r.depth}':>9} {r.gamma_depth:>9.2e} "
            + " ".join(f"{r.errors[k]:>12.2e} {r.ulps[k]:>6.1f}" for k in DATA_KINDS)
        )
    return "\n".join(lines)


def plot(rows: list[Row], path: str) -> str:
    """Error / sum|x| against ranks per algorithm, one panel per data kind, bounds dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = sorted({r.dtype for r in rows})
    fig, axes = plt.subplots(len(dtypes), len(DATA_KINDS), figsize=(5 * len(DATA_KINDS), 4 * len(dtypes)),
                             squeeze=False)  # fmt: skip
    for i, dt in enumerate(dtypes):
        for j, kind in enumerate(DATA_KINDS):
            ax = axes[i, j]
            for k, name in enumerate(dict.fromkeys(r.algorithm for r in rows)):
                pts = sorted(
                    (r.p, r.errors[kind], r.gamma_depth) for r in rows if r.algorithm == name and r.dtype == dt
                )
                if not pts:
                    continue
                ps, errs, bounds = zip(*pts)
                line = ax.plot(ps, [max(e, 1e-20) for e in errs], marker="o", label=name, color=f"C{k}")[0]
                ax.plot(ps, bounds, ls="--", color=line.get_color(), lw=0.8)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("ranks")
            ax.set_ylabel("max |error| / sum|x|")
            ax.set_title(f"{dt}, {kind} data (dashed: bound)")
            ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path
