"""The hierarchical allreduce in the simulator: the same composed generator the MPI path runs, on group views.

Results are checked against numpy (exact integer-valued inputs) and symbolically (every element holds every
rank's contribution exactly once); the traffic between nodes against what the algorithm promises.
"""

import numpy as np
import pytest

from collectives.algorithms import ALGORITHMS
from collectives.algorithms.hierarchical import GroupView, NodeLayout, hierarchical
from collectives.sim import CostModel, Hierarchical, Link, check_real, check_symbolic, simulate

INNER = ["ring", "tree", "double_tree", "recursive_doubling", "rabenseifner", "naive"]


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("ranks_per_node", [1, 2, 3, 4, 7])  # 2 and 3 do not divide every p; 7 > p: one node
@pytest.mark.parametrize("inner", INNER)
def test_every_rank_ends_with_numpys_sum(p, ranks_per_node, inner):
    spec = hierarchical(ALGORITHMS[inner], NodeLayout.blocks(p, ranks_per_node))
    for n in (0, 1, 7, 100):
        check_real(spec, p, n, dtype=np.int64, seed=3)  # raises WrongResultError naming rank and element
        check_real(spec, p, n, dtype=np.float32, op="max", seed=4)
        check_symbolic(spec, p, n, seed=5)


def test_a_layout_from_host_names_need_not_be_contiguous():
    layout = NodeLayout.from_names(["a", "b", "a", "c", "b"])
    assert layout.node_of == (0, 1, 0, 2, 1)
    assert layout.leaders == (0, 1, 3)
    assert layout.members(1) == (1, 4)
    check_real(hierarchical(ALGORITHMS["ring"], layout), 5, 33, seed=1)
    check_symbolic(hierarchical(ALGORITHMS["ring"], layout), 5, 33, seed=1)


def test_blocks_put_the_remainder_on_the_last_node():
    layout = NodeLayout.blocks(5, 2)
    assert layout.node_of == (0, 0, 1, 1, 2)
    assert (layout.nodes, layout.leaders, layout.largest_node) == (3, (0, 2, 4), 2)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_ranks_per_node_is_named(bad):
    with pytest.raises(ValueError, match="ranks_per_node must be a positive integer"):
        NodeLayout.blocks(4, bad)


def test_a_group_view_renumbers_ranks():
    sent = []

    class Parent:
        rank, size = 6, 8

        def isend(self, buf, dest, tag):
            sent.append((dest, tag))

    view = GroupView(Parent(), (2, 6, 7))
    assert (view.rank, view.size) == (1, 3)
    view.isend(np.zeros(1), 2, 5)
    assert sent == [(7, 5)]
    with pytest.raises(ValueError, match="rank 6 is not a member"):
        GroupView(Parent(), (0, 1))


def test_only_leaders_send_between_nodes_and_each_node_sends_the_inner_algorithms_bytes():
    p, k, n = 8, 4, 1 << 16  # two nodes of four: the leaders (0 and 4) run a 2-rank ring
    topo = Hierarchical(p, k, Link(1e-6, 1e10), Link(1e-5, 1e8))
    result = simulate(hierarchical(ALGORITHMS["ring"], NodeLayout.blocks(p, k)), p, n, model=CostModel(), topology=topo)
    crossing = {name: nbytes for name, _, nbytes, _ in result.links if "->core" in name and nbytes}
    # a 2-rank ring: each leader sends its half in the reduce-scatter and its half in the allgather
    assert crossing == {"node0nic0->core": n, "node1nic0->core": n}
    flat = simulate("ring", p, n, model=CostModel(), topology=topo)
    crossing = {name: nbytes for name, _, nbytes, _ in flat.links if "->core" in name and nbytes}
    # the flat ring crosses at 3 -> 4 and 7 -> 0, each carrying 2(p-1) chunks of n/p
    assert crossing == {"node0nic3->core": 2 * (p - 1) * n // p, "node1nic3->core": 2 * (p - 1) * n // p}
    assert result.time < flat.time


def test_the_closed_form_matches_the_simulator_on_one_uniform_link():
    alpha, beta, gamma = 1e-5, 1e-9, 2e-10
    model = CostModel.textbook(alpha, beta, gamma)
    for p, k in [(4, 2), (6, 3), (5, 2), (8, 4)]:
        spec = hierarchical(ALGORITHMS["ring"], NodeLayout.blocks(p, k))
        n = 4 * 1024
        predicted = spec.cost(p, n, 4).time(alpha, beta, gamma)
        assert simulate(spec, p, n, model=model).time == pytest.approx(predicted, rel=1e-9), (p, k)
