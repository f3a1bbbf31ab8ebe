"""The one link model: units, presets, parse errors, and that every user of a link takes this one."""

import math

import pytest

import collectives
from collectives import emulation, select
from collectives.link import PRESETS, Link, get_preset, parse_bandwidth, parse_link, parse_time
from collectives.sim import CostModel, topology
from collectives.sim import presets as sim_presets
from collectives.sim.machine import machine_from_options, network_link


@pytest.mark.parametrize(
    "spec, latency, bandwidth",
    [
        ("10Gbps,20us", 20e-6, 10e9 / 8),  # b = bits
        ("10Gb/s,20us", 20e-6, 10e9 / 8),
        ("25GB/s, 2us", 2e-6, 25e9),  # B = bytes
        ("25GBps,2us", 2e-6, 25e9),
        ("100 Mbps,1ms", 1e-3, 100e6 / 8),
        ("1.5Gb/s,500ns", 500e-9, 1.5e9 / 8),
        ("1GiB/s,1s", 1.0, 2**30),
        (" 400kbps , 3.5ms ", 3.5e-3, 400e3 / 8),
    ],
)
def test_bandwidth_latency_specs(spec, latency, bandwidth):
    link = parse_link(spec)
    assert link.latency == pytest.approx(latency, rel=1e-12)
    assert link.bandwidth == pytest.approx(bandwidth, rel=1e-12)
    assert link.message_time(1000) == pytest.approx(latency + 1000 / bandwidth, rel=1e-12)


def test_presets_by_name_and_alias_are_end_to_end_links_with_sources():
    hdr = parse_link("ib-hdr")
    assert hdr.bandwidth == 25e9 and hdr.name == "ib-hdr" and "IBTA" in hdr.source
    assert hdr.latency == pytest.approx(0.8e-6 + 2 * 130e-9)  # end point plus two hops through one switch
    assert parse_link("IB-200G") == hdr == get_preset("ib-200").link
    assert parse_link("pcie").bandwidth == pytest.approx(16e9 * 16 * 128 / 130 / 8)
    for preset in PRESETS.values():
        assert preset.source and preset.link.bandwidth == preset.hop.bandwidth == preset.bandwidth


@pytest.mark.parametrize(
    "bad, says",
    [
        ("fast", "cannot read the link 'fast'"),
        ("10Gbps", "cannot read the link"),
        ("10Gbps,20", "each with its unit"),  # a latency without a unit is almost surely not 20 seconds
        ("10Gbps,20us,3", "two fields"),
        ("0Gbps,1us", "bandwidth must be positive"),
        ("10Xbps,1us", "cannot read the bandwidth '10Xbps'"),
        ("10Gbps,20parsecs", "cannot read the time"),
    ],
)
def test_bad_specs_say_what_is_expected_and_list_the_presets(bad, says):
    with pytest.raises(ValueError, match="10Gbps,20us") as e:
        parse_link(bad)
    assert says in str(e.value) and "'ib-edr'" in str(e.value) and "b = bits, B = bytes" in str(e.value)


def test_a_link_is_passed_through_and_other_types_are_refused():
    link = Link(latency=1e-6, bandwidth=1e9)
    assert parse_link(link) is link
    with pytest.raises(TypeError, match="'10Gbps,20us'"):
        parse_link(10e9)


def test_the_simulators_old_argument_order_gets_a_clear_error():
    with pytest.raises(ValueError, match="looks swapped"):
        Link(100e9 / 8, 90e-9)  # topology.Link(bandwidth, latency) as the simulator took it
    with pytest.raises(ValueError, match="latency must be a non-negative"):
        Link(-1e-6, 1e9)


def test_units_read_by_hand():
    assert parse_time("2us") == pytest.approx(2e-6) and parse_time("1.5 ms") == pytest.approx(1.5e-3)
    assert parse_time("3e-6") == 3e-6 and parse_time("7ns") == pytest.approx(7e-9)
    assert parse_bandwidth("100Gbps") == parse_bandwidth("100Gb/s") == pytest.approx(12.5e9)
    assert parse_bandwidth("12.5GB/s") == parse_bandwidth("12.5GBps") == pytest.approx(12.5e9)
    assert parse_bandwidth("25e9") == 25e9 and parse_bandwidth("2MiB/s") == 2 * 2**20


def test_str_is_readable():
    assert str(Link(20e-6, 10e9 / 8)) == "10 Gb/s (1.25 GB/s), 20 us"
    assert str(parse_link("ib-edr")).startswith("ib-edr: 100 Gb/s (12.5 GB/s), ")


def test_every_part_of_the_package_uses_this_one_link():
    assert collectives.Link is Link is emulation.Link is topology.Link and collectives.parse_link is parse_link
    assert emulation.parse_link is parse_link and sim_presets.PRESETS is PRESETS
    assert sim_presets.link_preset("ib-100g") == parse_link("ib-edr")
    t = emulation.EmulatedLinkTransport(_Nothing(), "10Gbps,20us")
    assert t.link == Link(20e-6, 1.25e9, source="--link 10Gbps,20us")
    m = select.MachineModel.from_link("10Gbps,20us", gamma=1e-10)
    assert (m.alpha, m.beta, m.gamma) == (20e-6, 1 / 1.25e9, 1e-10) and m.link.bandwidth == pytest.approx(1.25e9)
    c = CostModel.from_link("25GB/s,2us", gamma=1e-10)
    assert (c.alpha, c.beta, c.ports) == (2e-6, 1 / 25e9, "one") and c.link.latency == 2e-6
    assert math.isinf(CostModel().link.bandwidth)


def test_the_simulator_splits_a_preset_but_keeps_a_spec_end_to_end():
    alpha, hop = network_link("ib-hdr")
    assert (alpha, hop.latency, hop.bandwidth) == (0.8e-6, 130e-9, 25e9)
    alpha, hop = network_link("10Gbps,20us")
    assert (alpha, hop.latency, hop.bandwidth) == (20e-6, 0.0, 1.25e9)
    m = machine_from_options(link="10Gbps,20us")
    model, topo = m.build(4)
    assert model.alpha == 20e-6 and topo.link.per_byte == pytest.approx(1 / 1.25e9)


class _Nothing:
    rank, size = 0, 1
