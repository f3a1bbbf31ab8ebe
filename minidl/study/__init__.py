"""The convergence-vs-speed study: how many workers, at which batch, reach a target accuracy soonest.

``python -m minidl.study batch-scaling`` measures steps to a target accuracy against the global
batch size (with a tuned learning rate per batch, several seeds, several recipes) and finds the
critical batch; ``plan`` turns that curve, a measured compute time and the simulator's allreduce
times into a predicted time to accuracy against the number of workers; ``validate`` checks the
planner against real ``mpiexec`` runs of the trainer; ``compare`` puts any trainer runs side by
side from their ``--metrics`` files.
"""

from minidl.study.errors import StudyError

__all__ = ["StudyError"]
