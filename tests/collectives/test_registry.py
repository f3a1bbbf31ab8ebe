"""The registry: one name, one place that checks algorithm names, and caches that follow its version."""

import numpy as np
import pytest

import collectives
from collectives import algorithms, plans, select
from collectives.algorithms import ALGORITHMS, AlgorithmSpec, algorithm_names, resolve
from collectives.prepare import validate
from collectives.sim import simulate

BUILT_IN = ["ring", "tree", "tree_pipelined", "double_tree", "recursive_doubling", "rabenseifner", "naive"]


def _spec(name):
    return AlgorithmSpec(name, ALGORITHMS["ring"].run, ALGORITHMS["ring"].cost, "a test copy of the ring")


def test_names_for_command_lines():
    assert collectives.algorithm_names() == ["auto", *BUILT_IN]
    assert algorithm_names(auto=False) == BUILT_IN


def test_resolve_is_the_one_check_and_lists_the_valid_names():
    assert resolve("ring") == "ring" and resolve("auto") == "auto"
    with pytest.raises(ValueError) as e:
        resolve("rnig")
    assert str(e.value) == f"allreduce: unknown algorithm 'rnig'; expected one of {['auto', *BUILT_IN]}"
    with pytest.raises(ValueError, match=r"unknown algorithm 'auto'; expected one of \['ring', 'tree'"):
        resolve("auto", auto=False)
    with pytest.raises(ValueError, match=r"broadcast: unknown algorithm 'ring'; expected one of \['binomial', 'pip"):
        resolve("ring", collective="broadcast")
    with pytest.raises(ValueError, match="unknown algorithm None"):
        resolve(None)


@pytest.mark.parametrize(
    "collective, op, algorithm",
    [("allreduce", "sum", "rnig"), ("reduce_scatter", "sum", "tree"), ("allgather", None, "halving")],
)
def test_the_api_and_the_simulator_raise_the_registrys_message(collective, op, algorithm):
    with pytest.raises(ValueError) as from_registry:
        resolve(algorithm, collective=collective)
    with pytest.raises(ValueError) as from_api:
        validate(collective, 4, np.zeros(8), op, algorithm, 0)
    assert str(from_api.value) == str(from_registry.value)
    if collective == "allreduce":
        with pytest.raises(ValueError) as from_sim:
            simulate(algorithm, 4, 64)
        with pytest.raises(ValueError) as without_auto:  # the simulator cannot choose for a machine it models
            resolve(algorithm, auto=False)
        assert str(from_sim.value) == str(without_auto.value)


def test_validate_checks_the_rest_of_the_call():
    call = validate("allreduce", 4, np.zeros((2, 3)), "avg", "auto", 0)
    assert call.flat.shape == (6,) and call.op.name == "avg" and call.algorithm in ALGORITHMS
    with pytest.raises(ValueError, match="read-only"):
        validate("allreduce", 4, _readonly(), "sum", "ring", 0)
    with pytest.raises(ValueError, match="contiguous"):
        validate("allreduce", 4, np.zeros((4, 4))[:, ::2], "sum", "ring", 0)
    with pytest.raises(ValueError, match=r"root must be a rank in 0\.\.3, got 4"):
        validate("broadcast", 4, np.zeros(3), None, "binomial", 4)
    with pytest.raises(ValueError, match="'halving' needs a power-of-two number of ranks, got 3"):
        validate("reduce_scatter", 3, np.zeros(3), "sum", "halving", 0)


def _readonly():
    a = np.zeros(3)
    a.setflags(write=False)
    return a


def test_registry_is_one_dict_under_one_name_and_the_old_name_warns():
    assert "REGISTRY" not in collectives.__all__ and "REGISTRY" not in algorithms.__all__
    with pytest.warns(DeprecationWarning, match="use collectives.ALGORITHMS"):
        assert collectives.REGISTRY is collectives.ALGORITHMS is ALGORITHMS
    with pytest.warns(DeprecationWarning):
        assert algorithms.REGISTRY is ALGORITHMS
    with pytest.raises(AttributeError):
        collectives.NO_SUCH_NAME  # noqa: B018


def test_plans_are_dropped_when_the_registry_or_the_model_changes():
    cache = plans.current(plans.PlanCache())
    cache["key"] = "plan"
    assert plans.current(cache) == {"key": "plan"}  # nothing changed: kept
    before = algorithms.version
    algorithms.register(_spec("test_copy"))
    try:
        assert algorithms.version == before + 1
        assert plans.current(cache) == {}
        cache["key"] = "plan"
    finally:
        algorithms.unregister("test_copy")
    assert algorithms.version == before + 2 and plans.current(cache) == {}
    cache["key"] = "plan"
    old = select.get_model()
    select.set_model(old, p=97)  # any change of the selection model
    try:
        assert plans.current(cache) == {}
    finally:
        select.set_model(old)


def test_automatic_choices_follow_the_registry():
    assert "test_free" not in [select.choose(4, n) for n in (8, 1 << 20)]
    free = AlgorithmSpec("test_free", ALGORITHMS["ring"].run, lambda p, n, i=1: _ZERO, "costs nothing")
    algorithms.register(free)
    try:
        assert select.choose(4, 1 << 20) == "test_free"  # the cached choice was made under the old version
    finally:
        algorithms.unregister("test_free")
    assert select.choose(4, 1 << 20) != "test_free"


_ZERO = collectives.Cost(0, 0, 0, 0, 0)


def test_nonblocking_shares_the_prepare_step():
    from pathlib import Path

    source = (Path(collectives.__file__).parent / "nonblocking.py").read_text()
    assert "from collectives.prepare import" in source and "_prepare" not in source
