"""The algorithms, one module each, registered by name here and nowhere else.

``ALGORITHMS`` maps an allreduce algorithm's name to its :class:`AlgorithmSpec`; ``BLOCKS`` (from
:mod:`collectives.algorithms.blocks`) maps each building block (reduce_scatter, allgather,
broadcast, reduce) to its algorithms. :func:`resolve` is the one place a name is checked; every
caller (the API, the non-blocking calls, the simulator, the command lines) goes through it.

Caches built from the registry (the API's plans, ``select``'s choices) compare :data:`version`,
which every change to the registry increases, instead of being told to forget: the registry
knows nothing of the layers above it. Selection (``algorithm="auto"``) lives apart, in
:mod:`collectives.select`, and reads only the specs: their cost functions and constraints.
"""

import importlib
import os
import sys
import warnings
from typing import Any

from collectives.algorithms.blocks import BLOCKS, BlockSpec
from collectives.algorithms.double_tree import double_tree_allreduce, double_tree_cost
from collectives.algorithms.naive import naive_allreduce, naive_cost
from collectives.algorithms.rabenseifner import rabenseifner_allreduce, rabenseifner_cost
from collectives.algorithms.recursive_doubling import recursive_doubling_allreduce, recursive_doubling_cost
from collectives.algorithms.ring import ring_allreduce, ring_cost
from collectives.algorithms.spec import Algorithm, AlgorithmSpec, Constraints, Cost
from collectives.algorithms.tree import tree_allreduce, tree_cost, tree_pipelined_allreduce, tree_pipelined_cost

ALGORITHMS: dict[str, AlgorithmSpec] = {}
version = 0  # increased by every register/unregister; caches built from the registry compare it


def register(spec: AlgorithmSpec) -> AlgorithmSpec:
    """Add an algorithm (ours or a user's) so every API, test harness and benchmark can use it."""
    global version
    if spec.name in ALGORITHMS or spec.name == "auto":
        raise ValueError(f"an allreduce algorithm named {spec.name!r} is already registered")
    ALGORITHMS[spec.name] = spec
    version += 1
    return spec


def unregister(name: str) -> None:
    """Remove a registered algorithm (for tests and experiments with user algorithms)."""
    global version
    ALGORITHMS.pop(name, None)
    version += 1


def algorithm_names(auto: bool = True) -> list[str]:
    """The names ``algorithm=`` accepts for allreduce, for command lines' ``--help``: "auto" first, then
    the registered ones in registration order. Command lines show these and let :func:`resolve` check."""
    return (["auto"] if auto else []) + list(ALGORITHMS)


def resolve(name: Any, *, auto: bool = True, collective: str = "allreduce") -> str:
    """``name`` if it names a registered algorithm of ``collective`` (or "auto", for allreduce when
    ``auto``), else a ValueError listing the valid names. The one place algorithm names are checked."""
    if collective == "allreduce":
        valid = algorithm_names(auto)
    elif collective in BLOCKS:
        valid = list(BLOCKS[collective])
    else:
        raise ValueError(f"unknown collective {collective!r}; expected allreduce or one of {sorted(BLOCKS)}")
    if isinstance(name, str) and name in valid:
        return name
    if isinstance(name, str) and ":" in name and collective == "allreduce":
        return _register_user_algorithm(name)
    raise ValueError(f"{collective}: unknown algorithm {name!r}; expected one of {valid}")


def _import_user_object(ref: str) -> tuple[Any, Any]:
    """The object ``package.module:attr`` names, importable from the current directory as well."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr.isidentifier():
        raise ValueError(f"allreduce: cannot read the algorithm {ref!r}; expected package.module:function")
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:  # command lines run as console scripts do not have the current directory on the path
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"allreduce: algorithm {ref!r}: cannot import {module_name!r} ({e})") from None
    finally:
        if added:
            sys.path.remove(cwd)
    try:
        return getattr(module, attr), module
    except AttributeError:
        raise ValueError(f"allreduce: algorithm {ref!r}: module {module_name!r} has no {attr!r}") from None


def _register_user_algorithm(ref: str) -> str:
    """Import ``package.module:function`` and return the registered name that runs it.

    The object may be an :class:`AlgorithmSpec` or the algorithm's generator function. A spec or
    function already registered (a module that registers itself on import) keeps its name;
    otherwise it is registered as ``ref``, with the cost ``function_cost`` from the same module
    (every registered algorithm needs a closed form: ``auto`` and the harness read it).
    """
    obj, module = _import_user_object(ref)
    for spec in ALGORITHMS.values():
        if spec is obj or spec.run is obj:
            return spec.name
    if isinstance(obj, AlgorithmSpec):
        return register(obj).name
    if not callable(obj):
        raise ValueError(
            f"allreduce: algorithm {ref!r} is a {type(obj).__name__}; expected a function or AlgorithmSpec"
        )
    attr = ref.partition(":")[2]
    cost = getattr(module, f"{attr}_cost", None)
    if not callable(cost):
        raise ValueError(
            f"allreduce: algorithm {ref!r} has no cost function: define {attr}_cost(p, nbytes, itemsize=1) -> Cost "
            f"in {module.__name__} or point at an AlgorithmSpec"
        )
    summary = (obj.__doc__ or ref).strip().splitlines()[0]
    return register(AlgorithmSpec(ref, obj, cost, summary)).name


def __getattr__(name: str) -> Any:
    if name == "REGISTRY":  # the registry's old second name
        warnings.warn(
            "collectives.algorithms.REGISTRY is deprecated; use collectives.ALGORITHMS",
            DeprecationWarning,
            stacklevel=2,
        )
        return ALGORITHMS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register(AlgorithmSpec("ring", ring_allreduce, ring_cost, "reduce-scatter then allgather around a ring, segmented"))
register(AlgorithmSpec("tree", tree_allreduce, tree_cost, "binomial-tree reduce to rank 0, then broadcast"))
register(
    AlgorithmSpec(
        "tree_pipelined", tree_pipelined_allreduce, tree_pipelined_cost, "binomial tree with segments flowing through"
    )
)
register(
    AlgorithmSpec("double_tree", double_tree_allreduce, double_tree_cost, "two complementary binary trees, half each")
)
register(
    AlgorithmSpec(
        "recursive_doubling",
        recursive_doubling_allreduce,
        recursive_doubling_cost,
        "lg p exchanges of the whole vector",
    )
)
register(
    AlgorithmSpec(
        "rabenseifner", rabenseifner_allreduce, rabenseifner_cost, "recursive halving, then recursive doubling"
    )
)
register(AlgorithmSpec("naive", naive_allreduce, naive_cost, "reduce to rank 0 linearly, then send to each rank"))

__all__ = [
    "ALGORITHMS",
    "BLOCKS",
    "Algorithm",
    "AlgorithmSpec",
    "BlockSpec",
    "Constraints",
    "Cost",
    "algorithm_names",
    "register",
    "resolve",
    "ring_allreduce",
    "unregister",
]
