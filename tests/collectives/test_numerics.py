"""``collectives.sim numerics``: the trees are the textbook ones, the replay is the real run, the bound holds."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from collectives.algorithms import ALGORITHMS
from collectives.sim.__main__ import main
from collectives.sim.numerics import make_data, measure, reduction_trees
from collectives.sim.simulate import run_real


def test_binomial_tree_and_naive_orders_at_four_ranks_are_the_textbook_ones():
    # binomial reduce: 1 -> 0 and 3 -> 2, then 2 -> 0; every element the same tree
    tree = reduction_trees("tree", 4, 4)
    assert [tree.expression(i) for i in range(4)] == ["((x0 + x1) + (x2 + x3))"] * 4
    assert tree.leaf_depths(0) == {0: 2, 1: 2, 2: 2, 3: 2}
    # the linear reduction at rank 0 adds the ranks in order
    naive = reduction_trees("naive", 4, 4)
    assert naive.expression(3) == "(((x0 + x1) + x2) + x3)"
    assert naive.leaf_depths(3) == {0: 3, 1: 3, 2: 2, 3: 1}


def test_ring_gives_each_chunk_a_chain_starting_at_a_different_rank():
    # ring reduce-scatter: a chunk's partial sum travels p-1 hops, one rank added per hop (a chain)
    ring = reduction_trees("ring", 4, 4)
    starts = set()
    for i in range(4):
        depths = ring.leaf_depths(i)
        order = sorted(depths, key=lambda r: -depths[r])  # deepest first: the order of addition
        assert sorted(depths.values()) == [1, 2, 3, 3]  # a chain of three additions
        first_two, rest = set(order[:2]), order[2:]
        chain = [min(first_two), max(first_two)] if max(first_two) - min(first_two) == 1 else [3, 0]
        # consecutive ranks around the ring
        full = chain + rest
        assert all((full[k + 1] - full[k]) % 4 == 1 for k in range(3)), full
        starts.add(full[0])
    assert starts == {0, 1, 2, 3}


def test_recursive_doubling_at_eight_ranks_pairs_by_distance_one_two_four():
    rd = reduction_trees("recursive_doubling", 8, 8)
    assert rd.expression(5) == "(((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)))"


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@pytest.mark.parametrize("p", [1, 2, 3, 5, 8])
def test_replaying_the_tree_gives_the_real_run_bit_for_bit(name, p):
    n = 11
    x = make_data("mixed", p, n, 1, np.float32, seed=p)[:, :, 0]
    real = run_real(name, list(x)).buffers[0]
    replay = reduction_trees(name, p, n, np.float32).replay(x[:, :, None])[:, 0]
    assert replay.tobytes() == real.tobytes()


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_bound_holds_on_the_measured_errors(name, dtype):
    for p in (2, 3, 7, 16):
        row = measure(name, p, dtype, trials=4)
        assert max(row.bound_ratio.values()) <= 1, row
        assert row.depth <= p - 1 and row.min_depth >= 1  # every input goes through 1..p-1 additions


def test_the_measured_error_is_against_the_exact_sum():
    # three float32 values whose float32 sum in any order loses the 1: the exact sum is 1
    x = np.array([[[2.0**24]], [[1.0]], [[-(2.0**24)]]], np.float32)
    exact = sum(Fraction(float(v)) for v in x[:, 0, 0])
    got = reduction_trees("naive", 3, 1).replay(x)[0, 0]  # ((big + 1) + -big): the 1 is absorbed
    assert exact == 1 and got == 0.0
    assert math.fsum(x[:, 0, 0].astype(float)) == 1.0


def test_cli_table_draw_and_plot(tmp_path, capsys):
    png = tmp_path / "err.png"
    assert main(["numerics", "ring,tree", "--ranks", "2,4", "--trials", "2", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "random err" in out and "cancel err" in out
    assert len([line for line in out.splitlines() if line.startswith(("ring ", "tree "))]) == 4
    assert png.exists() and png.stat().st_size > 10_000
    assert main(["numerics", "tree", "--ranks", "4", "--draw", "0"]) == 0
    out = capsys.readouterr().out
    assert "tree, 4 ranks, element 0: ((x0 + x1) + (x2 + x3))" in out
    assert main(["numerics", "ring", "--ranks", "4", "--dtype", "float16"]) == 2
    assert "expected float32 or float64" in capsys.readouterr().err
