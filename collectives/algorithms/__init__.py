"""The allreduce algorithms, one module each, registered by name in ``REGISTRY``.

Selection (``algorithm="auto"``) lives apart, in :mod:`collectives.select`, and reads only the
specs: their cost functions and constraints.
"""

from collectives import plans
from collectives.algorithms.double_tree import double_tree_allreduce, double_tree_cost
from collectives.algorithms.naive import naive_allreduce, naive_cost
from collectives.algorithms.rabenseifner import rabenseifner_allreduce, rabenseifner_cost
from collectives.algorithms.recursive_doubling import recursive_doubling_allreduce, recursive_doubling_cost
from collectives.algorithms.ring import ring_allreduce, ring_cost
from collectives.algorithms.spec import Algorithm, AlgorithmSpec, Constraints, Cost
from collectives.algorithms.tree import tree_allreduce, tree_cost, tree_pipelined_allreduce, tree_pipelined_cost

REGISTRY: dict[str, AlgorithmSpec] = {}


def register(spec: AlgorithmSpec) -> AlgorithmSpec:
    """Add an algorithm (ours or a user's) so every API, test harness and benchmark can use it."""
    if spec.name in REGISTRY or spec.name == "auto":
        raise ValueError(f"an allreduce algorithm named {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    plans.invalidate()
    return spec


def unregister(name: str) -> None:
    """Remove a registered algorithm (for tests and experiments with user algorithms)."""
    REGISTRY.pop(name, None)
    plans.invalidate()


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

# The public name: iterating it gives the algorithm names, indexing it gives the spec.
ALGORITHMS = REGISTRY

__all__ = [
    "ALGORITHMS",
    "REGISTRY",
    "Algorithm",
    "AlgorithmSpec",
    "Constraints",
    "Cost",
    "register",
    "ring_allreduce",
    "unregister",
]
