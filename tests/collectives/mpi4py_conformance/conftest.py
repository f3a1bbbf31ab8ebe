"""mpi4py's test files in upstream/ run under mpiexec through run.py, never as this suite's own tests."""

collect_ignore_glob = ["upstream/*"]
