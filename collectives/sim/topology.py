"""How the ranks are wired: links with a bandwidth and a latency, and the route of each message.

A topology maps a message from rank ``src`` to rank ``dst`` to the directed links it crosses.
The simulator's :class:`collectives.sim.network.Network` then times messages on those links:
each link serves the bytes of the messages that cross it one message after another, at its own
bandwidth, and the links of a route work at the same time (cut-through), so a message arrives
when the last of its links has carried it, and never faster than its slowest link. Messages
that share a link therefore share its bandwidth (k equal messages through one link take k times
as long), while a wide link (a fat-tree uplink) carries several narrower flows at once.

Compared with max-min fair sharing this is first-come-first-served per link rather than
simultaneous: the time a congested link needs for all its traffic is the same, individual
messages finish at different times.

A link here is :class:`collectives.link.Link` (the one link model of the package), with its
latency per hop.
"""

from __future__ import annotations

import math
import random

from collectives.link import Link


def _per_hop(link: Link) -> str:
    return f"{link.describe()}/hop"


class Topology:
    """``p`` ranks wired by directed links; :meth:`route` lists the links a message crosses."""

    kind = "topology"
    pairwise = False  # True: a private link per ordered pair of ranks, not enumerated

    def __init__(self, p: int, placement: str | None = None) -> None:
        if p < 1:
            raise ValueError(f"a topology needs at least one rank, got p={p}")
        self.p = p
        self.link_per_byte: list[float] = []
        self.link_latency: list[float] = []
        self.link_names: list[str] = []
        self.position = _placement(p, placement)
        self.placement = placement or "linear"

    def _link(self, name: str, link: Link) -> int:
        self.link_per_byte.append(link.per_byte)
        self.link_latency.append(link.latency)
        self.link_names.append(name)
        return len(self.link_names) - 1

    def route(self, src: int, dst: int) -> tuple[int, ...]:
        """Link ids from ``src`` to ``dst`` (both ranks), in order."""
        pos = self.position
        if pos is not None:
            src, dst = pos[src], pos[dst]
        return self._route(src, dst) if src != dst else ()

    def _route(self, src: int, dst: int) -> tuple[int, ...]:
        raise NotImplementedError

    def hops(self, src: int, dst: int) -> int:
        return len(self.route(src, dst))

    def describe(self) -> str:
        return f"{self.kind} ({self.p} ranks)"


def _placement(p: int, placement: str | None) -> list[int] | None:
    """Where each rank sits: in order ("linear") or shuffled ("random:SEED"), to show mapping effects."""
    if placement in (None, "", "linear"):
        return None
    if placement.startswith("random"):
        seed = int(placement.split(":", 1)[1]) if ":" in placement else 0
        pos = list(range(p))
        random.Random(seed).shuffle(pos)
        return pos
    raise ValueError(f"unknown placement {placement!r}; expected 'linear' or 'random:SEED'")


class FullyConnected(Topology):
    """A private full-duplex link between every pair of ranks: no contention between pairs.

    This is the network the textbook alpha-beta formulas assume; messages between the same two
    ranks still share their link.
    """

    kind = "full"
    pairwise = True

    def __init__(self, p: int, link: Link, placement: str | None = None) -> None:
        super().__init__(p, placement)
        self.link = link

    def route(self, src: int, dst: int) -> tuple[int, ...]:
        return (src * self.p + dst,) if src != dst else ()

    def describe(self) -> str:
        return f"fully connected ({self.p} ranks), a private link per pair: {_per_hop(self.link)}"


class Switch(Topology):
    """One non-blocking switch: each rank has one link up and one down, so contention is at the endpoints."""

    kind = "switch"

    def __init__(self, p: int, link: Link, placement: str | None = None) -> None:
        super().__init__(p, placement)
        self.link = link
        self.up = [self._link(f"rank{r}->switch", link) for r in range(p)]
        self.down = [self._link(f"switch->rank{r}", link) for r in range(p)]

    def _route(self, src: int, dst: int) -> tuple[int, ...]:
        return (self.up[src], self.down[dst])

    def describe(self) -> str:
        return f"single switch ({self.p} ranks), one port per rank: {_per_hop(self.link)}"


class Ring(Topology):
    """Ranks on a bidirectional ring; a message takes the shorter way round, hop by hop."""

    kind = "ring"

    def __init__(self, p: int, link: Link, placement: str | None = None) -> None:
        super().__init__(p, placement)
        self.link = link
        self.cw = [self._link(f"{i}->{(i + 1) % p}", link) for i in range(p)]
        self.ccw = [self._link(f"{i}->{(i - 1) % p}", link) for i in range(p)]

    def _route(self, src: int, dst: int) -> tuple[int, ...]:
        p = self.p
        forward = (dst - src) % p
        if forward <= p - forward:
            return tuple(self.cw[(src + k) % p] for k in range(forward))
        return tuple(self.ccw[(src - k) % p] for k in range(p - forward))

    def describe(self) -> str:
        return f"bidirectional ring ({self.p} ranks): {_per_hop(self.link)}"


class Torus(Topology):
    """A 2-D or 3-D torus with wrap-around links and dimension-order routing (x, then y, then z).

    Ranks fill the torus in row-major order; ``dims`` must multiply to p.
    """

    kind = "torus"

    def __init__(self, dims: tuple[int, ...], link: Link, placement: str | None = None) -> None:
        p = math.prod(dims)
        super().__init__(p, placement)
        if len(dims) not in (1, 2, 3) or min(dims) < 1:
            raise ValueError(f"a torus needs 1 to 3 positive dimensions, got {dims}")
        self.dims = tuple(dims)
        self.link = link
        self.strides = [math.prod(dims[d + 1 :]) for d in range(len(dims))]
        # plus[d][node] / minus[d][node]: the link leaving node in dimension d, upward / downward
        self.plus: list[list[int]] = []
        self.minus: list[list[int]] = []
        for d, n in enumerate(dims):
            self.plus.append([self._link(f"{i}->{self._step(i, d, 1)}", link) if n > 1 else -1 for i in range(p)])
            self.minus.append([self._link(f"{i}->{self._step(i, d, -1)}", link) if n > 2 else -1 for i in range(p)])

    def _step(self, node: int, d: int, direction: int) -> int:
        """The neighbour of ``node`` one step along dimension d (with wrap-around)."""
        n, stride = self.dims[d], self.strides[d]
        c = (node // stride) % n
        return node + ((c + direction) % n - c) * stride

    def coords(self, node: int) -> list[int]:
        return [(node // s) % n for s, n in zip(self.strides, self.dims)]

    def _route(self, src: int, dst: int) -> tuple[int, ...]:
        links = []
        cur = src
        for d, (n, stride) in enumerate(zip(self.dims, self.strides)):
            a, b = (cur // stride) % n, (dst // stride) % n
            fwd = (b - a) % n
            if fwd == 0:
                continue
            up = fwd <= n - fwd
            for _ in range(fwd if up else n - fwd):
                c = (cur // stride) % n
                if up:
                    links.append(self.plus[d][cur])
                    cur += ((c + 1) % n - c) * stride
                else:
                    links.append(self.minus[d][cur])
                    cur += ((c - 1) % n - c) * stride
        return tuple(links)

    def describe(self) -> str:
        shape = "x".join(map(str, self.dims))
        return f"{len(self.dims)}-D torus {shape} ({self.p} ranks): {_per_hop(self.link)}"


class FatTree(Topology):
    """A k-ary fat tree: switches with ``k`` children, levels added until one root spans all ranks.

    Each rank's link to its leaf switch has the link bandwidth; the uplink of a switch spanning
    ``s`` ranks carries ``s * bandwidth / oversubscription`` (1 = full bisection; 2 = the common
    2:1 taper at the leaves). Uplinks are modelled as one wide link per switch, i.e. perfect load
    balancing over its physical cables.
    """

    kind = "fattree"

    def __init__(self, p: int, link: Link, k: int = 16, oversubscription: float = 1.0, placement: str | None = None):
        super().__init__(p, placement)
        if k < 2:
            raise ValueError(f"a fat tree needs switches with at least 2 children, got k={k}")
        if oversubscription < 1:
            raise ValueError(f"the oversubscription ratio must be >= 1, got {oversubscription}")
        self.k, self.oversubscription, self.link = k, oversubscription, link
        self.levels = max(1, math.ceil(math.log(p, k) - 1e-9)) if p > 1 else 1
        # up[l][i] / down[l][i]: between node i of level l (0 = ranks) and its parent
        self.up: list[list[int]] = []
        self.down: list[list[int]] = []
        for level in range(self.levels):
            count = -(-p // k**level)
            span = k**level
            lk = link if level == 0 else link.scaled(span / oversubscription)
            self.up.append([self._link(f"L{level}n{i}->up", lk) for i in range(count)])
            self.down.append([self._link(f"up->L{level}n{i}", lk) for i in range(count)])

    def _route(self, src: int, dst: int) -> tuple[int, ...]:
        k = self.k
        top = 1
        while src // k**top != dst // k**top:
            top += 1
        ups = [self.up[level][src // k**level] for level in range(top)]
        downs = [self.down[level][dst // k**level] for level in reversed(range(top))]
        return tuple(ups + downs)

    def describe(self) -> str:
        return (
            f"{self.k}-ary fat tree, {self.levels} level(s) ({self.p} ranks), "
            f"oversubscription {self.oversubscription:g}:1: {_per_hop(self.link)}"
        )


class Hierarchical(Topology):
    """Nodes of several accelerators: a fast switch inside each node, network cards between nodes.

    Inside a node every accelerator has one link up and one down to the node's switch (as with
    NVSwitch). Between nodes, accelerator ``i`` of a node uses network card ``i % nics``; cards
    hang off one non-blocking core switch. Ranks fill node 0 first, then node 1, and so on.
    """

    kind = "hierarchical"

    def __init__(
        self,
        p: int,
        per_node: int,
        intra: Link,
        inter: Link,
        nics: int | None = None,
        placement: str | None = None,
    ) -> None:
        super().__init__(p, placement)
        if per_node < 1:
            raise ValueError(f"a node needs at least one accelerator, got {per_node}")
        self.per_node, self.intra, self.inter = per_node, intra, inter
        self.nics = nics or per_node
        if not 1 <= self.nics <= per_node:
            raise ValueError(f"nics per node must be between 1 and {per_node}, got {self.nics}")
        self.nodes = -(-p // per_node)
        self.gpu_up = [self._link(f"gpu{r}->nvswitch", intra) for r in range(p)]
        self.gpu_down = [self._link(f"nvswitch->gpu{r}", intra) for r in range(p)]
        self.nic_up = [[self._link(f"node{n}nic{c}->core", inter) for c in range(self.nics)] for n in range(self.nodes)]
        self.nic_down = [
            [self._link(f"core->node{n}nic{c}", inter) for c in range(self.nics)] for n in range(self.nodes)
        ]

    def _route(self, src: int, dst: int) -> tuple[int, ...]:
        ns, nd = divmod(src, self.per_node), divmod(dst, self.per_node)
        if ns[0] == nd[0]:
            return (self.gpu_up[src], self.gpu_down[dst])
        return (self.nic_up[ns[0]][ns[1] % self.nics], self.nic_down[nd[0]][nd[1] % self.nics])

    def describe(self) -> str:
        return (
            f"{self.nodes} node(s) x {self.per_node} accelerators ({self.p} ranks), {self.nics} NIC(s) per node; "
            f"intra-node {_per_hop(self.intra)}; inter-node {_per_hop(self.inter)}"
        )


def balanced_dims(p: int, ndim: int) -> tuple[int, ...]:
    """The most cube-like factorisation of p into ``ndim`` factors, largest first (12 -> (4, 3))."""
    best: tuple[int, ...] | None = None

    def search(rest: int, left: int, maxf: int, acc: tuple[int, ...]) -> None:
        nonlocal best
        if left == 1:
            if rest <= maxf:
                cand = (*acc, rest)
                if best is None or max(cand) - min(cand) < max(best) - min(best):
                    best = cand
            return
        for f in range(min(maxf, rest), 0, -1):
            if rest % f == 0 and f**left >= rest:
                search(rest // f, left - 1, f, (*acc, f))

    search(p, ndim, p, ())
    assert best is not None
    return best


TOPOLOGY_HELP = """\
full                     a private link per pair of ranks (default; what closed forms assume)
switch                   one non-blocking switch, one port per rank (contention at endpoints)
ring                     a bidirectional ring, shortest-way routing
torus  | torus:8x8       2-D torus (dims multiply to p; omitted: the most square shape)
torus3d| torus:8x8x8     3-D torus, dimension-order routing
fattree:k=16,oversub=2   k-ary fat tree, uplinks tapered by the oversubscription ratio
hier:gpus=8[,nics=8]     nodes of 8 accelerators: --intra links inside a node, --link between
any of them + ,placement=random:SEED  shuffles which rank sits where"""


def make_topology(spec: str, p: int, link: Link, intra: Link | None = None) -> Topology:
    """Build the topology named by ``spec`` (see ``TOPOLOGY_HELP``) for ``p`` ranks."""
    name, _, arg_text = spec.partition(":")
    name = name.strip().lower()
    args: dict[str, str] = {}
    shape: str | None = None
    for item in filter(None, (a.strip() for a in arg_text.split(","))):
        if "=" in item:
            key, value = item.split("=", 1)
            args[key.strip().lower()] = value.strip()
        else:
            shape = item
    placement = args.pop("placement", None)

    def done(topo: Topology) -> Topology:
        if args:
            raise ValueError(f"topology {spec!r}: unknown option(s) {sorted(args)}")
        return topo

    if name in ("full", "fully-connected", "fullyconnected"):
        return done(FullyConnected(p, link, placement))
    if name == "switch":
        return done(Switch(p, link, placement))
    if name == "ring":
        return done(Ring(p, link, placement))
    if name in ("torus", "torus2d", "torus3d"):
        if shape:
            dims = tuple(int(x) for x in shape.lower().split("x"))
            if math.prod(dims) != p:
                raise ValueError(f"torus {shape} has {math.prod(dims)} nodes but there are {p} ranks")
        else:
            dims = balanced_dims(p, 3 if name == "torus3d" else 2)
        return done(Torus(dims, link, placement))
    if name in ("fattree", "fat-tree"):
        k = int(args.pop("k", 16))
        oversub = float(args.pop("oversub", args.pop("oversubscription", 1)))
        return done(FatTree(p, link, k=k, oversubscription=oversub, placement=placement))
    if name in ("hier", "hierarchical", "cluster"):
        gpus = int(args.pop("gpus", args.pop("per_node", 8)))
        nics = int(args.pop("nics")) if "nics" in args else None
        if intra is None:
            raise ValueError("a hierarchical topology needs an intra-node link (--intra, e.g. nvlink4)")
        return done(
            Hierarchical(p, min(gpus, p), intra, link, nics=min(nics, gpus, p) if nics else None, placement=placement)
        )
    raise ValueError(f"unknown topology {spec!r}; expected one of:\n{TOPOLOGY_HELP}")
