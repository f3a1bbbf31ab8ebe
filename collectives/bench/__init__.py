"""Benchmarks of the hand-written collectives against MPI's own (``python -m collectives.bench``)."""
