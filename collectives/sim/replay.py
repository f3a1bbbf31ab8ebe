"""Time a recorded schedule (:mod:`collectives.sim.record`) under a cost model and a topology, fast.

The reference :class:`collectives.sim.scheduler.Simulator` drives p Python generators and spends
microseconds of Python per message; a schedule recorded once is replayed here by a compiled loop
(:mod:`collectives.sim.replay_loop`) that applies the same rules in the same order, so the times,
counters, link statistics and timeline are the reference's, bit for bit (the tests compare them on
every algorithm, model and topology). Everything that depends only on a size (a message's time on
a link, a reduction's) is computed here by the reference's own objects and expressions.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from collectives.sim.cost_model import CostModel, curve_time
from collectives.sim.network import Network, PairwiseNetwork, make_network
from collectives.sim.record import Schedule, small_pages
from collectives.sim.result import SimResult
from collectives.sim.scheduler import COPY, MSG, REDUCE, default_topology
from collectives.sim.topology import Topology

PORTS = {"multi": 0, "one": 1, "nic": 2}
EVENT_NAMES = (MSG, REDUCE, COPY)


def replay(
    schedule: Schedule, model: CostModel | None = None, topology: Topology | None = None, timeline: bool = False
) -> SimResult | None:
    """The reference scheduler's result for ``schedule``, computed by the compiled loop; None on a deadlock."""
    with small_pages():
        return _replay(schedule, model, topology, timeline)


def _replay(schedule: Schedule, model: CostModel | None, topology: Topology | None, timeline: bool) -> SimResult | None:
    from collectives.sim.replay_loop import replay as loop
    from collectives.sim.replay_tables import local_counters, message_tables, size_classes

    wall, cpu = time.perf_counter(), time.process_time()
    p = schedule.p
    model = model or CostModel()
    if topology is not None and topology.p != p:
        raise ValueError(f"the topology has {topology.p} ranks but the simulation has {p}")
    topology = topology or default_topology(p, model)
    network = make_network(topology, model)
    pairwise = isinstance(network, PairwiseNetwork)
    # A table of p * p pair numbers while that is cheap (zeroed lazily by the kernel: only the
    # pages of pairs that talk are touched); beyond, the pair keys are sorted.
    pair_table = np.zeros(p * p if p * p <= 1 << 26 else 0, np.int32)
    tables = message_tables(
        schedule.req_kind, schedule.req_peer, schedule.req_bytes, schedule.req_base, p, pair_table, pairwise
    )
    msg_size, msg_link, sizes, keys, sent_msgs, sent_bytes, recv_msgs, recv_bytes = tables
    empty_i, empty_f = np.zeros(1, np.int64), np.zeros(0)
    if pairwise:
        size_x = np.array([_pair_time(network, m) for m in sizes.tolist()], dtype=np.float64)
        routing = (empty_i, empty_i, empty_f, empty_f, empty_f)
        nlinks = keys.size
        fp = [network.alpha, network.latency]
    else:
        size_x = np.zeros(sizes.size)  # a routed message's time depends on its links (the loop's)
        routing = _routes(network, keys, p)
        nlinks = len(topology.link_per_byte)
        fp = [model.alpha, 0.0]
    local = schedule.local_bytes
    local_size, local_sizes = size_classes(local, None)
    local_dt = np.array([_local_time(model, m) for m in local_sizes.tolist()], dtype=np.float64)
    fp += [model.o, model.g, model.call_overhead, float(model.eager_limit)]
    ip = [PORTS[model.ports], int(model.sync_send), int(not pairwise), int(timeline)]
    max_events = (msg_size.size + local.size) if timeline else 0
    out = loop(
        schedule.ops, schedule.op_base, schedule.req_kind, schedule.req_base, schedule.partner,
        schedule.waits, schedule.wait_base, schedule.step_base, local_size, local_dt, schedule.local_base,
        msg_link, msg_size, sizes, size_x, *routing, nlinks,
        np.array(fp, dtype=np.float64), np.array(ip, dtype=np.int64), max_events,
    )  # fmt: skip
    status, finish, steps, link_msgs, link_bytes, link_busy = out[:6]
    if status:
        return None
    if pairwise:
        network.links = {
            int(k): [0.0, m, b, busy]
            for k, m, b, busy in zip(keys.tolist(), link_msgs.tolist(), link_bytes.tolist(), link_busy.tolist())
        }
    else:
        network.msgs, network.bytes, network.busy = link_msgs.tolist(), link_bytes.tolist(), link_busy.tolist()
    reduce_bytes, reduce_calls, copy_bytes = local_counters(local, schedule.local_base)
    counters = {
        "sent_msgs": sent_msgs.tolist(),
        "sent_bytes": sent_bytes.tolist(),
        "recv_msgs": recv_msgs.tolist(),
        "recv_bytes": recv_bytes.tolist(),
        "reduce_bytes": reduce_bytes.tolist(),
        "reduce_calls": reduce_calls.tolist(),
        "copy_bytes": copy_bytes.tolist(),
    }
    events = _events(out[6:], local) if timeline else None
    state = SimpleNamespace(p=p, network=network, events=events, model=model, topology=topology, **counters)
    result = SimResult.from_simulator(state, finish.tolist(), int(steps), time.perf_counter() - wall)  # type: ignore[arg-type]
    result.cpu = time.process_time() - cpu
    return result


def _pair_time(network: PairwiseNetwork, m: int) -> float:
    """How long a message of m bytes holds its pair link (PairwiseNetwork.transfer's x)."""
    if network.curve:
        return curve_time(network.curve, m) - network.latency
    return m * network.link_per_byte


def _local_time(model: CostModel, m: int) -> float:
    """Simulator.reduce / Simulator.copy's dt; copies are recorded as ~bytes (negative)."""
    if m >= 0:
        dt = curve_time(model.reduce_curve, m) if model.reduce_curve else m * model.gamma
    else:
        m = ~m
        dt = curve_time(model.copy_curve, m) if model.copy_curve else m * model.delta
    dt += model.call_overhead
    return dt


def _routes(network: Network, pairs: np.ndarray, p: int) -> tuple[np.ndarray, ...]:
    """Each distinct (source, destination)'s links, latency and slowest link, from Network's own routing."""
    ptr, links, latency, slowest = [0], [], [], []
    for key in pairs.tolist():
        route, lat, slow = network._route_info(key // p, key % p)
        links.extend(route)
        ptr.append(len(links))
        latency.append(lat)
        slowest.append(slow)
    return (
        np.array(ptr, np.int64),
        np.array(links, np.int64),
        np.array(latency, np.float64),
        np.array(slowest, np.float64),
        np.array(network.per_byte, np.float64),
    )


def _events(arrays: tuple[np.ndarray, ...], local: np.ndarray) -> list[tuple[str, int, int, float, float, int]]:
    """The timeline as the reference records it: (kind, rank or source, -1 or destination, start, end, bytes)."""
    kind, a, b, t0, t1, n = arrays
    n = n.copy()
    lo = n < 0  # local work: the size is looked up in the schedule
    sizes = local[-1 - n[lo]]
    n[lo] = np.where(sizes >= 0, sizes, ~sizes)
    names = [EVENT_NAMES[k] for k in kind.tolist()]
    return list(zip(names, a.tolist(), b.tolist(), t0.tolist(), t1.tolist(), n.tolist()))
