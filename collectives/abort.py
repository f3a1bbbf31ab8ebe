"""One rank's error ends the whole MPI job, printed once, instead of leaving the other ranks waiting.

Under ``mpiexec`` a Python exception on one rank normally kills only that rank's interpreter;
the others wait for it in their next collective for ever. :func:`abort_on_error` makes this
rank, on an uncaught exception, print its traceback once under a line naming the rank, then
call ``MPI_Abort``, which ends every rank of the job within about a second with a non-zero exit
status. A ``sys.exit(n)`` with a non-zero ``n`` ends the job the same way, with status ``n``,
once the rank has unwound (``finally`` blocks and ``atexit`` handlers run first); ``sys.exit(0)``
and a normal end are left alone.

Use it at the top of a script, or around its main part::

    collectives.abort_on_error()          # from here on, for the whole process
    with collectives.abort_on_error():     # or: this block (a raise or sys.exit in it ends the job)
        train()

Either way the hooks stay installed for the rest of the process. ``python -m mpi4py script.py``
gives the same safety net to any script (mpi4py aborts on an uncaught exception or a non-zero
exit), without the rank line above the traceback.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from types import TracebackType
from typing import Any

_installed: list[Any] = []  # the communicator to abort, once installed
_original_exit = sys.exit
_exiting: list[int] = []  # the status this process will abort the job with, once decided


class abort_on_error:  # lower case: called like a function as often as used in a with statement
    """Make an error on this rank end the whole job (see the module docstring); ``comm``: COMM_WORLD."""

    def __init__(self, comm: Any = None) -> None:
        from mpi4py import MPI

        self.comm = comm if comm is not None else MPI.COMM_WORLD
        if not _installed:
            sys.excepthook = _excepthook
            threading.excepthook = _thread_excepthook
            sys.exit = _exit
        _installed[:] = [self.comm]

    def __enter__(self) -> abort_on_error:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> bool:
        if error is None:
            return False
        if isinstance(error, SystemExit):
            _abort_at_exit(error.code)
            return False  # let it unwind; MPI aborts the job when the process exits
        _report(kind, error, tb)
        _abort(130 if isinstance(error, KeyboardInterrupt) else 1)
        return False  # not reached


def _rank() -> str:
    comm = _installed[0]
    return f"rank {comm.Get_rank()} of {comm.Get_size()}"


def _report(kind: Any, error: BaseException, tb: Any, where: str = "") -> None:
    text = "".join(traceback.format_exception(kind, error, tb))
    sys.stderr.write(f"collectives: {_rank()} failed{where}; ending the whole job (MPI_Abort):\n{text}")
    sys.stderr.flush()


# MPI_Abort tears the job down at once, and the launcher may not yet have forwarded what this
# rank (or another rank failing at the same moment, e.g. two ranks timing out together) just
# printed: MPICH's Hydra lost it in about 1 of 20 runs. A short pause lets the report reach the user.
FORWARD_GRACE = 0.5  # seconds


def _abort(status: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(FORWARD_GRACE)
    _installed[0].Abort(status)


def _status(code: Any) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1  # sys.exit("message") prints it and exits with 1


def _abort_at_exit(code: Any) -> None:
    status = _status(code)
    if status and not _exiting:
        _exiting.append(status)
        from mpi4py.run import set_abort_status

        sys.stderr.write(f"collectives: {_rank()} exits with status {status}; ending the whole job (MPI_Abort)\n")
        sys.stderr.flush()
        set_abort_status(status)


def _excepthook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    _report(kind, error, tb)
    _abort(130 if issubclass(kind, KeyboardInterrupt) else 1)


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # a thread ending itself with SystemExit is not an error (threading ignores it too)
    _report(args.exc_type, args.exc_value, args.exc_traceback, f" in thread {args.thread.name if args.thread else '?'}")
    _abort(1)


def _exit(code: Any = None) -> None:
    """``sys.exit`` that, for a non-zero status, makes the process end the whole job when it exits."""
    _abort_at_exit(code)
    _original_exit(code)
