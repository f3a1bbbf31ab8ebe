"""Time models, topologies and link sharing; closed forms against the simulation."""

import math

import pytest

from collectives import ALGORITHMS
from collectives.sim import CostModel, critical_terms, simulate
from collectives.sim.machine import machine_from_options
from collectives.sim.presets import PRESETS, get_preset, link_preset, presets_table
from collectives.sim.topology import FatTree, FullyConnected, Hierarchical, Link, Ring, Switch, Torus, make_topology
from collectives.sim.units import parse_bandwidth, parse_ranks, parse_size, parse_sizes, parse_time

LINK = Link(latency=0.0, bandwidth=1e9)  # 1 GB/s, no hop latency: times below are bytes / 1e9 plus alpha


def fan_in(t, buf, op):
    """Every rank but 0 sends to rank 0 at once; rank 0 receives them all."""
    if t.rank == 0:
        incoming = [t.scratch(buf.size, buf.dtype) for _ in range(1, t.size)]
        yield t.wait(*[t.irecv(incoming[i - 1], i, 0) for i in range(1, t.size)])
    else:
        yield t.send(buf, 0, 0)


def pairs(shift):
    """Rank r sends to r + shift (mod p) and receives from r - shift, all at once."""

    def algo(t, buf, op):
        p, r = t.size, t.rank
        incoming = t.scratch(buf.size, buf.dtype)
        yield t.sendrecv(buf, (r + shift) % p, incoming, (r - shift) % p, 0)

    return algo


def test_links_shared_by_messages_share_bandwidth():
    m = CostModel.alpha_beta_gamma(1e-6, 0.0)
    full = simulate(fan_in, 4, 1000, model=m, topology=FullyConnected(4, LINK))
    switch = simulate(fan_in, 4, 1000, model=m, topology=Switch(4, LINK))
    assert full.time == pytest.approx(1e-6 + 1e-6)  # three private links: all arrive together
    assert switch.time == pytest.approx(1e-6 + 3e-6)  # rank 0's down-link carries three messages in turn


def test_ring_topology_routes_the_short_way_and_contends():
    ring = Ring(8, LINK)
    assert ring.hops(0, 4) == 4 and ring.hops(0, 7) == 1 and ring.hops(6, 1) == 3
    m = CostModel.alpha_beta_gamma(0.0, 0.0)
    near = simulate(pairs(1), 8, 1000, model=m, topology=ring).time
    far = simulate(pairs(2), 8, 1000, model=m, topology=ring).time
    assert near == pytest.approx(1e-6)
    assert far == pytest.approx(2e-6)  # every link carries two 2-hop messages


def test_torus_dimension_order_routing_with_wraparound():
    t2 = Torus((4, 4), LINK)
    assert t2.hops(0, 15) == 2  # (0,0) -> (3,3): one wrap-around hop in each dimension
    assert t2.hops(0, 10) == 4  # (0,0) -> (2,2): two hops each way
    t3 = Torus((4, 4, 4), LINK)
    assert t3.hops(0, 63) == 3
    assert make_topology("torus", 12, LINK).dims == (4, 3)
    assert make_topology("torus3d", 64, LINK).dims == (4, 4, 4)
    with pytest.raises(ValueError, match="torus 4x4 has 16 nodes but there are 12 ranks"):
        make_topology("torus:4x4", 12, LINK)


def test_fat_tree_oversubscription_slows_cross_switch_traffic():
    m = CostModel.alpha_beta_gamma(0.0, 0.0)
    full = FatTree(8, LINK, k=4, oversubscription=1)
    tapered = FatTree(8, LINK, k=4, oversubscription=2)
    assert full.levels == 2 and full.hops(0, 1) == 2 and full.hops(0, 5) == 4
    cross = pairs(4)  # ranks 0-3 exchange with 4-7: all traffic crosses the leaf uplinks
    t_full = simulate(cross, 8, 1000, model=m, topology=full).time
    t_tapered = simulate(cross, 8, 1000, model=m, topology=tapered).time
    local = simulate(pairs(1), 4, 1000, model=m, topology=FatTree(4, LINK, k=4)).time
    # four 1 us flows through one leaf uplink of 4 GB/s (full bisection) or 2 GB/s (2:1)
    assert t_full == pytest.approx(1e-6)
    assert t_tapered == pytest.approx(2e-6)
    assert local == pytest.approx(1e-6)


def test_hierarchical_cluster_uses_fast_links_inside_a_node():
    intra, inter = Link(latency=0.0, bandwidth=100e9), Link(latency=0.0, bandwidth=10e9)
    topo = Hierarchical(16, 8, intra, inter)
    assert topo.nodes == 2
    m = CostModel.alpha_beta_gamma(0.0, 0.0)
    inside = simulate(pairs(1), 8, 10**6, model=m, topology=Hierarchical(8, 8, intra, inter)).time
    across = simulate(pairs(8), 16, 10**6, model=m, topology=topo).time
    assert inside == pytest.approx(1e-5)
    assert across == pytest.approx(1e-4)
    shared_nic = simulate(pairs(8), 16, 10**6, model=m, topology=Hierarchical(16, 8, intra, inter, nics=1)).time
    assert shared_nic == pytest.approx(8e-4)  # eight GPUs take turns on one card


def test_placement_shuffles_ranks_over_the_network():
    m = CostModel.alpha_beta_gamma(0.0, 0.0)
    linear = simulate("ring", 16, 1 << 20, model=m, topology=make_topology("torus:4x4", 16, LINK)).time
    shuffled = simulate(
        "ring", 16, 1 << 20, model=m, topology=make_topology("torus:4x4,placement=random:1", 16, LINK)
    ).time
    assert shuffled > 1.3 * linear


# Closed forms that assume another model than the textbook one, or that do not describe the code
# (see docs/simulator.md, "What the cross-check found"). strict: when fixed, this list must shrink.
KNOWN_DISAGREEMENTS = {
    "double_tree": "for odd p a rank is inner in both trees and its one port carries both halves (2x at p=3); "
    "5% over the formula at 64 MiB on 16-64 ranks",
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_DISAGREEMENTS[n]))
        if n in KNOWN_DISAGREEMENTS
        else n
        for n in sorted(ALGORITHMS)
    ],
)
def test_closed_form_agrees_with_simulation_within_one_percent(name):
    spec = ALGORITHMS[name]
    alpha, beta, gamma = 2e-6, 1e-10, 2e-10
    model = CostModel.textbook(alpha, beta, gamma)
    for p in (2, 3, 4, 5, 8, 16, 64):
        for nbytes in (4096, 256 << 10):  # one segment per message for the segmented algorithms
            formula = spec.cost(p, nbytes, 4).time(alpha, beta, gamma)
            sim = simulate(name, p, nbytes, model=model).time
            assert sim == pytest.approx(formula, rel=0.01), (p, nbytes)


def test_critical_terms_of_the_ring_match_its_cost():
    lat, xfer, red = critical_terms("ring", 8, 8 * 4096)
    c = ALGORITHMS["ring"].cost(8, 8 * 4096, 4)
    assert (lat, xfer, red) == (c.latency_terms, c.transfer_bytes, c.reduce_bytes)


SLOW_COSTS = {"double_tree": "double_tree_cost walks every rank's place in both trees: about a minute at 2^20"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.skip(reason=SLOW_COSTS[n])) if n in SLOW_COSTS else n
        for n in sorted(ALGORITHMS)
    ],
)
def test_closed_forms_reach_a_million_ranks(name):
    c = ALGORITHMS[name].cost(1 << 20, 1 << 30, 4)
    assert 0 < c.time(1e-6, 1e-10, 1e-10) < math.inf
    assert c.messages_per_rank >= 1


def test_presets_have_sources_and_are_overridable():
    assert {"ib-edr", "ib-ndr", "nvlink4", "pcie4"} <= set(PRESETS)
    for p in PRESETS.values():
        assert p.source and p.link.bandwidth > 0
    assert get_preset("ib-400").link.bandwidth == pytest.approx(50e9)
    assert link_preset("ib-100g").bandwidth == pytest.approx(12.5e9)
    assert "source:" in presets_table()
    m = machine_from_options(link="ib-hdr", bandwidth="10GB/s", alpha="3us", gamma="2GB/s")
    assert m.link.bandwidth == pytest.approx(10e9) and m.model.alpha == pytest.approx(3e-6)
    assert m.model.gamma == pytest.approx(0.5e-9)
    with pytest.raises(ValueError, match="unknown link preset 'ib-999'"):
        get_preset("ib-999")


def test_units():
    assert parse_size("64") == 64 and parse_size("4K") == 4096 and parse_size("1MB") == 10**6
    assert parse_time("2us") == pytest.approx(2e-6) and parse_time("1.5 ms") == pytest.approx(1.5e-3)
    assert parse_bandwidth("100Gbps") == pytest.approx(12.5e9) == parse_bandwidth("100Gb/s")
    assert parse_bandwidth("12.5GB/s") == pytest.approx(12.5e9)
    assert parse_ranks("2..16") == [2, 4, 8, 16] and parse_ranks("1..4:+1") == [1, 2, 3, 4]
    assert parse_sizes("1K..16K:x4") == [1024, 4096, 16384]
    with pytest.raises(ValueError, match="cannot read the size"):
        parse_size("lots")


def test_cost_model_validation():
    with pytest.raises(ValueError, match=r"CostModel\.alpha must be a non-negative"):
        CostModel(alpha=-1.0)
    with pytest.raises(ValueError, match=r"CostModel\.ports must be one of"):
        CostModel(ports="two")
    d = CostModel.textbook(1e-6, 1e-9).to_dict()
    assert CostModel.from_dict(d) == CostModel.textbook(1e-6, 1e-9)
    assert math.isinf(CostModel().eager_limit)
