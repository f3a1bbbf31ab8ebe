"""Tree shapes, cost formulas, operator semantics and selection: the parts that need no MPI."""

import numpy as np
import pytest

import collectives
from collectives import select
from collectives.algorithms.double_tree import double_binary_trees
from collectives.algorithms.folding import Pow2Group
from collectives.algorithms.tree import binomial_tree
from collectives.ops import AVG, MAX, SUM


def check_tree(p, shape_of):
    parent_of = {}
    for r in range(p):
        _, children = shape_of(r)
        for c in children:
            assert c not in parent_of, f"p={p}: rank {c} has two parents"
            parent_of[c] = r
            assert shape_of(c)[0] == r, f"p={p}: {c} is a child of {r} but names another parent"
    roots = [r for r in range(p) if shape_of(r)[0] < 0]
    assert len(roots) == 1 and len(parent_of) == p - 1
    for r in range(p):  # every rank reaches the root: no cycles
        seen, x = set(), r
        while x >= 0:
            assert x not in seen
            seen.add(x)
            x = shape_of(x)[0]


@pytest.mark.parametrize("p", [*range(1, 20), 31, 32, 33, 64, 100])
def test_binomial_tree_is_a_tree_for_any_root(p):
    for root in {0, p - 1, p // 2}:
        check_tree(p, lambda r, root=root: binomial_tree(p, r, root))


@pytest.mark.parametrize("p", [*range(2, 20), 31, 32, 33, 64, 100])
def test_double_trees_are_trees_and_complementary(p):
    for i in (0, 1):
        check_tree(p, lambda r, i=i: double_binary_trees(p, r)[i])
    # NCCL's property: no rank is a leaf in both trees, so every rank forwards data in one of them
    for r in range(p):
        assert any(double_binary_trees(p, r)[i][1] for i in (0, 1)), f"p={p}: rank {r} is a leaf in both trees"


@pytest.mark.parametrize("p", range(1, 20))
def test_fold_groups_cover_a_power_of_two(p):
    groups = [Pow2Group(p, r) for r in range(p)]
    members = sorted(g.vrank for g in groups if g.vrank >= 0)
    assert members == list(range(groups[0].size))
    assert all(groups[0].real(g.vrank) == r for r, g in enumerate(groups) if g.vrank >= 0)


@pytest.mark.parametrize("name", sorted(collectives.ALGORITHMS))
def test_costs_are_zero_on_one_rank_and_bandwidth_terms_scale(name):
    cost = collectives.ALGORITHMS[name].cost
    assert cost(1, 1 << 20).time(1e-6, 1e-9, 1e-9) == 0
    small, large = cost(8, 1 << 10, 4), cost(8, 1 << 24, 4)
    assert large.bytes_sent_per_rank > small.bytes_sent_per_rank > 0
    assert large.time(1e-6, 1e-9, 1e-9) > small.time(1e-6, 1e-9, 1e-9)


def test_ring_cost_is_the_textbook_formula_when_divisible():
    c = collectives.ALGORITHMS["ring"].cost(4, 4000, 4)
    assert (c.latency_terms, c.transfer_bytes, c.reduce_bytes) == (6, 6000, 3000)
    assert (c.messages_per_rank, c.bytes_sent_per_rank) == (6, 6000)


def test_rabenseifner_folds_non_powers_of_two():
    c = collectives.ALGORITHMS["rabenseifner"].cost(6, 4000, 4)  # pof2 = 4, two ranks folded
    assert c.latency_terms == 2 * 2 + 2 and c.messages_per_rank == 2 * 2 + 1
    assert c.bytes_sent_per_rank == 2 * 3000 + 4000


def test_avg_on_integers_truncates_toward_zero_like_c():
    buf = np.array([-7, 7, -8, 5], dtype=np.int32)
    AVG.finalize(buf, 2)
    assert buf.tolist() == [-3, 3, -4, 2]
    f = np.array([1.0, -3.0])
    AVG.finalize(f, 4)
    assert f.tolist() == [0.25, -0.75]


def test_op_dtype_rules_explain_themselves():
    assert "logical or" in SUM.check_dtype(np.dtype(bool))
    assert MAX.check_dtype(np.dtype(bool)) is None
    assert "complex" in MAX.check_dtype(np.dtype(np.complex64))
    assert "not supported" in SUM.check_dtype(np.dtype("U3"))
    assert SUM.check_dtype(np.dtype(np.float16)) is None


def test_auto_is_deterministic_and_prefers_latency_for_small_messages():
    assert select.choose(2, 8, 4) == "recursive_doubling"
    assert select.choose(4, 64 << 20, 4) not in ("recursive_doubling", "tree", "naive")  # bandwidth matters there
    text = collectives.explain(1 << 20, p=4)
    assert "chosen:" in text and all(name in text for name in collectives.ALGORITHMS)


def test_constraints_are_data_and_selection_skips_violators():
    spec = collectives.AlgorithmSpec(
        "zz_pow2", lambda t, b, op: iter(()), lambda p, n, i=1: collectives.Cost(0, 0, 0, 0, 0), "free but picky",
        collectives.Constraints(power_of_two=True, min_count_per_rank=2),
    )  # fmt: skip
    collectives.register(spec)
    try:
        assert "power-of-two" in spec.constraints.violation(3, 100)
        assert "per rank" in spec.constraints.violation(4, 7)
        assert select.choose(4, 1024, 4) == "zz_pow2"  # costs nothing, so it wins where it may run
        assert select.choose(3, 1024, 4) != "zz_pow2"
        assert "cannot run" in select.explain(1024, 3, 4)
        with pytest.raises(ValueError, match="already registered"):
            collectives.register(spec)
    finally:
        collectives.unregister("zz_pow2")


def test_import_does_not_start_mpi():
    import subprocess
    import sys

    code = "import sys, collectives; print('mpi4py.MPI' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
