"""The allreduce algorithms, one module each, registered by name in ``REGISTRY``."""

from collectives.algorithms.ring import ring_allreduce, ring_cost
from collectives.algorithms.spec import Algorithm, AlgorithmSpec, Cost

REGISTRY: dict[str, AlgorithmSpec] = {}


def register(spec: AlgorithmSpec) -> AlgorithmSpec:
    """Add an algorithm (ours or a user's) so every API, test harness and benchmark can use it."""
    if spec.name in REGISTRY:
        raise ValueError(f"an allreduce algorithm named {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


register(AlgorithmSpec("ring", ring_allreduce, ring_cost, "reduce-scatter then allgather around a ring"))

# The public name: iterating it gives the algorithm names, indexing it gives the spec.
ALGORITHMS = REGISTRY

__all__ = ["ALGORITHMS", "REGISTRY", "Algorithm", "AlgorithmSpec", "Cost", "register", "ring_allreduce"]
