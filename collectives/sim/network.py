"""Link state during one simulation: when each link is next free, and what has crossed it."""

from __future__ import annotations

from collectives.sim.cost_model import CostModel, curve_time
from collectives.sim.topology import Topology


class Network:
    """Times messages on a topology's links (see :mod:`collectives.sim.topology` for the model).

    Every link serves the bytes of the messages that cross it one message after another, at its
    own bandwidth; the links of a route work at the same time (cut-through), so a message has
    arrived when the last of its links has carried it, plus the route's latency, and never
    sooner than its size over the slowest link allows. ``transfer`` returns ``(start, injected,
    arrival)``: when its first link began carrying it, when that link was done (the sender's
    buffer is free), and when it fully arrived.
    """

    def __init__(self, topology: Topology, model: CostModel) -> None:
        self.topology = topology
        self.alpha = model.alpha
        p = topology.p
        self.p = p
        n = len(topology.link_per_byte)
        self.per_byte = topology.link_per_byte
        self.free = [0.0] * n
        self.msgs = [0] * n
        self.bytes = [0] * n
        self.busy = [0.0] * n
        self._routes: dict[int, tuple[tuple[int, ...], float, float]] = {}

    def _route_info(self, src: int, dst: int) -> tuple[tuple[int, ...], float, float]:
        topo = self.topology
        links = topo.route(src, dst)
        latency = self.alpha + sum(topo.link_latency[i] for i in links)
        slowest = max((topo.link_per_byte[i] for i in links), default=0.0)
        info = (links, latency, slowest)
        self._routes[src * self.p + dst] = info
        return info

    def transfer(self, src: int, dst: int, nbytes: int, start: float) -> tuple[float, float, float]:
        info = self._routes.get(src * self.p + dst)
        if info is None:
            info = self._route_info(src, dst)
        links, latency, slowest = info
        if not links:
            return start, start, start + latency
        free, per_byte = self.free, self.per_byte
        msgs, nb, busy = self.msgs, self.bytes, self.busy
        first = free[links[0]]
        begin = first if first > start else start
        done = start + nbytes * slowest  # no link can move it faster than the slowest one
        injected = 0.0
        for i in links:
            x = nbytes * per_byte[i]
            served = (free[i] if free[i] > start else start) + x  # each link serves its messages in turn
            free[i] = served
            if served > done:
                done = served
            if not injected:
                injected = served
            msgs[i] += 1
            nb[i] += nbytes
            busy[i] += x
        return begin, injected, done + latency

    def link_stats(self) -> list[tuple[str, int, int, float]]:
        """(link name, messages, bytes, busy seconds) for every link that carried something."""
        names = self.topology.link_names
        return [(names[i], self.msgs[i], self.bytes[i], self.busy[i]) for i in range(len(names)) if self.msgs[i]]


class PairwiseNetwork(Network):
    """The fully connected network: one private link per ordered pair, created when first used."""

    def __init__(self, topology: Topology, model: CostModel) -> None:
        self.topology = topology
        self.alpha = model.alpha
        self.p = topology.p
        link = topology.link  # type: ignore[attr-defined]
        self.link_per_byte = link.per_byte
        self.latency = model.alpha + link.latency
        self.links: dict[int, list] = {}  # src*p+dst -> [free at, messages, bytes, busy seconds]
        self.curve = model.message_curve
        if self.curve:  # a measured message time replaces alpha + m*beta: its value at 0 B is the latency
            self.latency = self.curve[0][1]

    def transfer(self, src: int, dst: int, nbytes: int, start: float) -> tuple[float, float, float]:
        if src == dst:
            return start, start, start + self.alpha
        key = src * self.p + dst
        st = self.links.get(key)
        if st is None:
            st = self.links[key] = [0.0, 0, 0, 0.0]
        if st[0] > start:
            start = st[0]
        if self.curve:
            x = curve_time(self.curve, nbytes) - self.latency
        else:
            x = nbytes * self.link_per_byte
        end = start + x
        st[0] = end
        st[1] += 1
        st[2] += nbytes
        st[3] += x
        return start, end, end + self.latency

    def link_stats(self) -> list[tuple[str, int, int, float]]:
        p = self.p
        return [(f"{k // p}->{k % p}", st[1], st[2], st[3]) for k, st in sorted(self.links.items())]


def make_network(topology: Topology, model: CostModel) -> Network:
    return PairwiseNetwork(topology, model) if topology.pairwise else Network(topology, model)
