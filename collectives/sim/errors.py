"""What can go wrong in a simulated collective, each with a message that names ranks and calls."""

from __future__ import annotations


class SimulationError(Exception):
    """Base class: the simulated algorithm did something MPI would reject, hang on, or get wrong."""


class DeadlockError(SimulationError):
    """No rank can progress; the message lists what each blocked rank waits for."""

    def __init__(self, message: str, waits: dict[int, list[str]]) -> None:
        super().__init__(message)
        self.waits = waits


class HazardError(SimulationError):
    """A buffer was used while a message into or out of it was in flight, or read before it was set."""


class PortabilityError(SimulationError):
    """The algorithm touched data outside the transport interface (see collectives.transport)."""


class MessageError(SimulationError):
    """A message was malformed or left unmatched (truncation, bad peer, never received)."""


class AlgorithmError(SimulationError):
    """The algorithm's own code raised an exception on some rank."""


class WrongResultError(SimulationError):
    """A rank ended with a result different from the reference (real or symbolic data)."""
