"""Run under mpiexec -n 2: lossy hooks train the digits to nearly plain DDP's accuracy in the same steps.

Prints one line per hook (``HOOK accuracy``) from rank 0; the test compares them.
"""

import sys

from mpi4py import MPI

from minidl.train import main

EPOCHS = sys.argv[1]
for hook in sys.argv[2:]:
    summary = main(["--epochs", EPOCHS, "--comm-hook", hook, "--quiet", "--no-progress"])
    if MPI.COMM_WORLD.Get_rank() == 0:
        print(f"{hook} {summary['test_accuracy']:.4f} {summary['wire_bytes_per_step']:.0f}", flush=True)
