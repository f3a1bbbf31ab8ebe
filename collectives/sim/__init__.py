"""collectives.sim: run the same algorithm code on thousands of virtual ranks, check it, predict its time.

Every allreduce algorithm is a generator written against :mod:`collectives.transport`; here it
runs unchanged on p virtual ranks in one process (:class:`Simulator`), on real numbers, on
symbols (which ranks' data each element holds) or on sizes alone, under a time model
(:class:`CostModel`) and a network (:mod:`collectives.sim.topology`).

Entry points: :func:`check` (the whole correctness-and-cost harness for one algorithm),
:func:`simulate` (predicted time, bandwidths, counters, timeline), :func:`check_real`,
:func:`check_symbolic`, :func:`run_real`; ``python -m collectives.sim --help`` for the CLI.
"""

from collectives.sim.cost_model import CostModel
from collectives.sim.errors import (
    AlgorithmError,
    DeadlockError,
    HazardError,
    MessageError,
    PortabilityError,
    SimulationError,
    WrongResultError,
)
from collectives.sim.harness import CheckReport, check, critical_terms
from collectives.sim.result import SimResult
from collectives.sim.scheduler import Simulator
from collectives.sim.simulate import check_real, check_symbolic, run_real, simulate
from collectives.sim.topology import FatTree, FullyConnected, Hierarchical, Link, Ring, Switch, Torus, make_topology

__all__ = [
    "AlgorithmError",
    "CheckReport",
    "CostModel",
    "DeadlockError",
    "FatTree",
    "FullyConnected",
    "HazardError",
    "Hierarchical",
    "Link",
    "MessageError",
    "PortabilityError",
    "Ring",
    "SimResult",
    "SimulationError",
    "Simulator",
    "Switch",
    "Torus",
    "WrongResultError",
    "check",
    "check_real",
    "check_symbolic",
    "critical_terms",
    "make_topology",
    "run_real",
    "simulate",
]
