"""Training-step time and memory of minidl against PyTorch CPU and a hand-written numpy floor.

``python -m minidl.bench`` (see ``__main__``). One module per job, as in ``collectives.bench``:

=================  =============================================================================
``workloads``      the four models, their PyTorch twins with the same weights, the numpy floor
``timing``         engines alternating single steps in rotating order; per-pair ratios
``memory``         peak resident memory of one step, in fresh processes
``trap``           numba's threading layers against OpenBLAS's threads (the conv-forward trap)
``profile``        per-op time of a minidl step, numba kernels on vs off
``overhead``       per-op Python overhead of the engine on tiny tensors
``report``         machine, load, versions, BLAS and command for ``--json``; the tables
=================  =============================================================================
"""

from minidl.bench.workloads import (
    BATCH,
    MODELS,
    check_same_loss,
    engines_for,
    make_batch,
    make_minidl_model,
    make_torch_model,
    minidl_step,
    numpy_floor_step,
    torch_step,
)

__all__ = [
    "BATCH",
    "MODELS",
    "check_same_loss",
    "engines_for",
    "make_batch",
    "make_minidl_model",
    "make_torch_model",
    "minidl_step",
    "numpy_floor_step",
    "torch_step",
]
