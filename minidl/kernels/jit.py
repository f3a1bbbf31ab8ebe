"""How minidl compiles its numba kernels: once per dtype, cached on disk, one process at a time.

A :class:`Kernel` wraps a plain Python function. Nothing is compiled (and numba is not even
imported) until the kernel is first called with a given float dtype; then the one signature
declared for that dtype is compiled, or loaded from numba's on-disk cache (``cache=True``), and
later calls go straight to numba's dispatcher. Compilation for call-time types is switched off,
so a call with unexpected argument types fails loudly instead of silently compiling another
specialisation (each costs a second or more; the tests check there is at most one per dtype).

Several ranks starting at once must not all compile the same kernels and race on the cache
files. A specialisation is compiled only under :func:`compile_lock`, an exclusive file lock
(``flock``) in the cache directory: the first process to take it compiles and writes the cache,
then drops a small "ready" marker beside it; the others wait, then load the cache. Once the
marker exists, processes load without taking the lock at all (numba writes cache files by
atomic rename, so a reader never sees half a file), so four ranks loading ten kernels do not
queue behind each other. A process that dies releases its lock (the kernel drops ``flock``
locks with the file descriptor); a lock held unusually long is waited on for
``MINIDL_COMPILE_LOCK_TIMEOUT`` seconds (default 900), then compilation goes ahead without
it, with a warning.

Kernels are serial on purpose (no ``parallel=True``): the threads of a rank belong to BLAS, and
numba's OpenMP workers spinning against OpenBLAS's is the trap measured in docs/performance.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

try:  # POSIX; elsewhere compilation is only serialised within one process
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "minidl-kernels.lock"
# fastmath flags for kernels that are mostly sums: reassociation lets LLVM vectorise a float
# reduction (5x on batch-norm statistics); no flag that changes inf/NaN semantics
REDUCE = frozenset({"reassoc"})
REGISTRY: list[Kernel] = []  # every kernel defined so far (for warm-up and status reports)

_thread_lock = threading.RLock()
_lock_depth = 0  # compile_lock is re-entrant within a process: a second flock on a new fd would deadlock


def lock_timeout() -> float:
    value = os.environ.get("MINIDL_COMPILE_LOCK_TIMEOUT", "900")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"MINIDL_COMPILE_LOCK_TIMEOUT must be a number of seconds, got {value!r}") from None


@contextlib.contextmanager
def compile_lock(directory: str) -> Iterator[None]:
    """Hold the kernel-compilation lock shared by every process using ``directory`` as numba cache."""
    global _lock_depth
    with _thread_lock:
        if _lock_depth or fcntl is None:
            _lock_depth += 1
            try:
                yield
            finally:
                _lock_depth -= 1
            return
        fd = _open_lock_file(directory)
        try:
            _acquire(fd, directory)
            _lock_depth += 1
            try:
                yield
            finally:
                _lock_depth -= 1
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _open_lock_file(directory: str) -> int:
    for where in (directory, tempfile.gettempdir()):  # a read-only cache directory: lock beside /tmp
        try:
            os.makedirs(where, exist_ok=True)
            return os.open(os.path.join(where, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            continue
    raise OSError(f"minidl.kernels: cannot create a compile lock file in {directory} or {tempfile.gettempdir()}")


def _acquire(fd: int, directory: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    deadline = time.monotonic() + lock_timeout()
    delay = 0.005
    while True:  # polled, not a blocking flock, so a stuck holder cannot hang this process forever
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                warnings.warn(
                    f"minidl.kernels: another process has held the compile lock in {directory} for more than "
                    f"{lock_timeout():.0f} s; compiling without it (set MINIDL_COMPILE_LOCK_TIMEOUT to wait longer)",
                    RuntimeWarning,
                    stacklevel=4,
                )
                raise _NoLock from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


class _NoLock(Exception):
    pass


def _touch(path: str) -> None:
    with contextlib.suppress(OSError):  # no marker (read-only cache): later runs just take the lock
        with open(path, "a"):
            pass


class Kernel:
    """A numba kernel (``nogil=True, cache=True``) with one declared signature per float dtype.

    ``signature(f)`` returns the numba signature for element type ``f`` (``numba.float32`` or
    ``numba.float64``). The dtype of the first argument (always a float array) picks the
    specialisation at call time.
    """

    def __init__(
        self,
        pyfunc: Callable[..., Any],
        signature: Callable[[Any], Any],
        fastmath: Any = False,
    ) -> None:
        self.pyfunc = pyfunc
        self.name = f"{pyfunc.__module__.rsplit('.', 1)[-1]}.{pyfunc.__name__}"
        self.signature = signature
        self.fastmath = fastmath
        self._dispatcher: Any = None
        self._ready: dict[np.dtype, Any] = {}
        self.__doc__ = pyfunc.__doc__
        REGISTRY.append(self)

    def __call__(self, *args: Any) -> Any:
        fn = self._ready.get(args[0].dtype)
        if fn is None:
            fn = self.prepare(args[0].dtype)
        return fn(*args)

    @property
    def dispatcher(self) -> Any:
        """The numba dispatcher (created on first use, so importing minidl does not import numba)."""
        if self._dispatcher is None:
            import numba

            self._dispatcher = numba.njit(
                nogil=True,
                cache=True,
                fastmath=set(self.fastmath) if self.fastmath else False,
                error_model="numpy",
            )(self.pyfunc)
        return self._dispatcher

    def prepare(self, dtype: Any) -> Any:
        """Compile (or load from the disk cache) the specialisation for ``dtype``; returns the dispatcher."""
        import numba

        dtype = np.dtype(dtype)
        if dtype.char not in "fd":
            raise TypeError(f"minidl kernel {self.name}: float32 or float64 arrays expected, got {dtype}")
        disp = self.dispatcher
        sig = self.signature(numba.from_dtype(dtype))
        directory = disp.stats.cache_path
        marker = self._marker(directory, dtype)
        try:
            with _thread_lock:
                if os.path.exists(marker):  # the cache is complete: load it without queueing
                    self._compile(disp, sig)
                else:
                    try:
                        with compile_lock(directory):
                            self._compile(disp, sig)
                            _touch(marker)
                    except _NoLock:
                        self._compile(disp, sig)
        except Exception as e:
            if hasattr(e, "add_note"):  # Python >= 3.11
                e.add_note(f"(while compiling minidl kernel {self.name} for {dtype})")
            raise
        self._ready[dtype] = disp
        return disp

    def _marker(self, directory: str, dtype: np.dtype) -> str:
        """Path of the file saying "this specialisation is in the cache", keyed like numba's cache
        (source file stamp, numba and Python versions), so an edited kernel is compiled again."""
        import numba

        source = inspect.getsourcefile(self.pyfunc) or ""
        try:
            st = os.stat(source)
            stamp = f"{st.st_mtime_ns}-{st.st_size}"
        except OSError:
            stamp = "unknown"
        key = f"{source}|{stamp}|{numba.__version__}|{sys.version_info[:2]}|{self.fastmath}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        return os.path.join(directory, f"minidl-{self.name}-{dtype}-{digest}.ready")

    @staticmethod
    def _compile(disp: Any, sig: Any) -> None:
        disp.disable_compile(False)
        try:
            disp.compile(sig)
        finally:
            if disp.signatures:  # only prepare() compiles: a call with unexpected types is an error
                disp.disable_compile(True)

    def specialisations(self) -> int:
        """How many signatures numba holds for this kernel (compiled or loaded)."""
        return 0 if self._dispatcher is None else len(self._dispatcher.signatures)

    def cache_counts(self) -> tuple[int, int]:
        """(signatures loaded from the disk cache, signatures compiled) in this process."""
        if self._dispatcher is None:
            return 0, 0
        stats = self._dispatcher.stats
        return sum(stats.cache_hits.values()), sum(stats.cache_misses.values())

    def __repr__(self) -> str:
        ready = ", ".join(str(d) for d in self._ready) or "not compiled"
        return f"<minidl kernel {self.name} ({ready})>"


def contiguous(a: Any, dtype: Any = None) -> np.ndarray:
    """``a`` as a C-contiguous array (of ``dtype``), copied only if needed; unlike
    ``np.ascontiguousarray`` a 0-d array stays 0-d."""
    a = np.asarray(a, dtype=dtype)
    return a if a.flags.c_contiguous else np.array(a, order="C")


def readonly(array_type: Any) -> Any:
    """The read-only variant of a numba array type, for kernel inputs: it also accepts writable arrays,
    while a writable parameter type would reject read-only ones (broadcast views, memory-mapped data)."""
    return array_type.copy(readonly=True)


def kernel(signature: Callable[[Any], Any], fastmath: Any = False) -> Callable[..., Kernel]:
    """Decorator: ``@kernel(lambda f: void(f[::1], f[::1]))`` makes a :class:`Kernel`."""

    def wrap(pyfunc: Callable[..., Any]) -> Kernel:
        return Kernel(pyfunc, signature, fastmath=fastmath)

    return wrap
