"""collectives: hand-written allreduce algorithms over mpi4py point-to-point messages.

Each algorithm is written once against a small point-to-point interface
(:mod:`collectives.transport`) and runs over MPI or in a simulator.
"""

from collectives.algorithms import ALGORITHMS, REGISTRY, register
from collectives.api import allreduce
from collectives.ops import OPS, ReduceOp

__all__ = ["ALGORITHMS", "OPS", "REGISTRY", "ReduceOp", "allreduce", "register"]
