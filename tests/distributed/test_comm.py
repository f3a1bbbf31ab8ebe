"""The process group's single-process behaviour: names, validation, links (multi-rank: mpi_ddp_check.py)."""

import numpy as np
import pytest

from minidl import distributed as dist


def test_a_world_of_one_rank_without_mpiexec():
    assert dist.get_rank() == 0 and dist.get_world_size() == 1
    a = np.array([1.0, -2.0, 3.5])
    assert dist.all_reduce(a, "avg") is a
    np.testing.assert_array_equal(a, [1.0, -2.0, 3.5])
    dist.broadcast(a, src=0)
    dist.barrier()


def test_algorithm_names_and_the_one_validation_error():
    names = dist.algorithms()
    assert "auto" in names and "ring" in names and "naive" in names
    assert dist.check_algorithm("ring") == "ring"
    with pytest.raises(ValueError, match=r"unknown algorithm 'nope'; expected one of \['auto', 'ring'"):
        dist.check_algorithm("nope")
    with pytest.raises(ValueError, match="unknown algorithm 'nope'"):
        dist.DistributedDataParallel(__import__("minidl").nn.Linear(2, 2), algorithm="nope")


def test_links_by_value_preset_or_spec():
    link = dist.resolve_link("10Gbps,20us")
    assert link.bandwidth == pytest.approx(10e9 / 8) and link.latency == pytest.approx(20e-6)
    assert dist.resolve_link(link) is link and dist.resolve_link(None) is None
    assert dist.resolve_link("ib-hdr").bandwidth == pytest.approx(25e9)  # 200 Gb/s
    with pytest.raises(ValueError, match="10Gbps,20us"):
        dist.resolve_link("fast")
