"""Exercise checks and helpers for the notebooks (``notebooks/03_collectives``, ``04_real_ranks``).

A learner's answer is checked the way the simulator's harness checks the project's own
algorithms, and the verdict is said in words: not only "wrong", but which rank went wrong at
which step and what the textbook ring does there. The checks return a :class:`LessonReport`
(print it, or look at ``.ok``) instead of raising, so a notebook can show a failing answer and
still run top to bottom.

``run_ranks`` launches real MPI processes from a notebook: each rank runs the same code, its
printed output is captured separately, and whatever it assigns to ``result`` comes back.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from collectives.algorithms.chunking import chunk_bounds
from collectives.ops import ReduceOp
from collectives.transport import Step, Transport

RING_RANKS = (2, 3, 4, 5, 8)  # real-data runs, with seeded random delivery orders
PROOF_RANKS = 1024


@dataclass
class LessonReport:
    """The verdict of an exercise check: a title, pass or fail, and what was found, line by line."""

    title: str
    ok: bool
    lines: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"{self.title}: {'PASS' if self.ok else 'FAIL'}"
        return "\n".join([head, *(f"  {line}" for line in self.lines)])

    __repr__ = __str__  # a notebook cell ending in a check shows the report, not a dataclass dump

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise AssertionError(str(self))


# ---------------------------------------------------------------------------------------------
# Notebook 3, exercise 1: your own ring allreduce


class _Recorder(Transport):
    """A transport in front of the simulator's that writes down which chunk each call touches.

    It changes nothing (every call is passed on); the check reads the log only to explain a
    failure in the ring's own terms (step, chunk) after the simulator has found it.
    """

    def __init__(self, inner: Transport, buf: np.ndarray, log: list[tuple[str, int, int]]) -> None:
        self.inner, self.rank, self.size = inner, inner.rank, inner.size
        self._base, self._itemsize, self._n = _address(buf), buf.itemsize, buf.size
        self.log = log

    def _where(self, view: Any) -> tuple[int, int] | None:
        """Element range of ``view`` inside the rank's buffer, or None if it is elsewhere (scratch)."""
        if not isinstance(view, np.ndarray) or view.size == 0:
            return None
        start = (_address(view) - self._base) // self._itemsize
        return (start, start + view.size) if 0 <= start < self._n else None

    def _note(self, kind: str, view: Any) -> None:
        where = self._where(view)
        if where is not None:
            self.log.append((kind, *where))

    def isend(self, buf: np.ndarray, dest: int, tag: int) -> Any:
        self._note("send", buf)
        return self.inner.isend(buf, dest, tag)

    def irecv(self, buf: np.ndarray, source: int, tag: int) -> Any:
        self._note("recv", buf)
        return self.inner.irecv(buf, source, tag)

    def wait(self, *requests: Any) -> Step:
        return self.inner.wait(*requests)

    def sendrecv(self, sendbuf: np.ndarray, dest: int, recvbuf: np.ndarray, source: int, tag: int) -> Step:
        self._note("send", sendbuf)
        self._note("recv", recvbuf)
        return self.inner.sendrecv(sendbuf, dest, recvbuf, source, tag)

    def send(self, buf: np.ndarray, dest: int, tag: int) -> Step:
        self._note("send", buf)
        return self.inner.send(buf, dest, tag)

    def recv(self, buf: np.ndarray, source: int, tag: int) -> Step:
        self._note("recv", buf)
        return self.inner.recv(buf, source, tag)

    def reduce(self, op: ReduceOp, inout: np.ndarray, incoming: np.ndarray) -> None:
        self._note("reduce", inout)
        self.inner.reduce(op, inout, incoming)

    def copy(self, dst: np.ndarray, src: np.ndarray) -> None:
        self._note("copy", dst)
        self.inner.copy(dst, src)

    def scratch(self, n: int, dtype: np.dtype) -> np.ndarray:
        return self.inner.scratch(n, dtype)


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def ring_schedule(p: int, r: int) -> list[tuple[str, int]]:
    """What rank ``r`` of the textbook ring does to its own buffer, in order: (action, chunk).

    At step s it sends chunk (r - s - 1) to the right; in the p - 1 reduce-scatter steps it adds
    the chunk (r - s - 2) arriving from the left into its own copy, in the p - 1 allgather steps
    it receives that chunk, complete, straight into place.
    """
    out = []
    for s in range(2 * (p - 1)):
        out.append(("send", (r - s - 1) % p))
        out.append(("reduce" if s < p - 1 else "recv", (r - s - 2) % p))
    return out


_VERBS = {
    "send": ("send", "sends"),
    "recv": ("receive into", "receives into"),
    "reduce": ("reduce into", "reduces into"),
}


def _explain_schedule(fn: Callable[..., Iterator[Step]], p: int = 4, per_chunk: int = 3) -> list[str]:
    """Run ``fn`` once on p ranks with equal chunks and say where its schedule first leaves the ring's."""
    from collectives import sim  # the simulator is for checks, not for the MPI path

    n = p * per_chunk
    logs: list[list[tuple[str, int, int]]] = [[] for _ in range(p)]

    def traced(t: Transport, buf: np.ndarray, op: ReduceOp) -> Iterator[Step]:
        yield from fn(_Recorder(t, buf, logs[t.rank]), buf, op)

    try:
        sim.run_real(traced, [np.arange(n, dtype=np.int64) for _ in range(p)])
        finished = True
    except sim.SimulationError:
        finished = False  # the log up to the failure is what we explain
    bounds = chunk_bounds(n, p)
    chunk_of = {(bounds[c], bounds[c + 1]): c for c in range(p)}
    for r in range(p):
        # Only whole-chunk actions are compared; a reduce/copy on scratch is invisible here.
        done = [(kind, chunk_of.get((a, b), f"elements [{a}:{b})")) for kind, a, b in logs[r] if kind != "copy"]
        want = ring_schedule(p, r)
        for i, (got, expected) in enumerate(zip(done, want)):
            if got != expected:
                step, phase = i // 2, "reduce-scatter" if i // 2 < p - 1 else "allgather"
                yours, ring = _VERBS[got[0]], _VERBS[expected[0]]
                return [
                    f"where it goes wrong (p={p}, {per_chunk} elements per chunk): rank {r}, step {step} ({phase}): "
                    f"you {yours[0]} chunk {got[1]}; the ring {ring[1]} chunk {expected[1]} there",
                    "  (at step s rank r sends chunk (r-s-1) mod p and receives chunk (r-s-2) mod p from its left)",
                ]
        if finished and len(done) < len(want):  # (a run stopped by an error is short anyway)
            sends = sum(kind == "send" for kind, _ in done)
            return [
                f"where it goes wrong (p={p}): rank {r} makes {sends} sends; a ring makes 2(p-1) = {2 * (p - 1)}: "
                f"a step is missing (the reduce-scatter and the allgather each need p-1 = {p - 1} steps)"
            ]
    return []


_HINTS = {
    "DeadlockError": "every rank waits for another, around a cycle: a send completes only once its receive is "
    "posted, so if every rank sends before it receives, nobody receives. Exchange with "
    "t.sendrecv(...) (or t.isend + t.irecv, then yield t.wait(both)).",
    "HazardError": "a buffer was used while a message into or out of it was still in flight: yield the step "
    "(wait) before you reduce into, or reuse, that memory.",
    "PortabilityError": "touch data only through t.reduce, t.copy, messages and slices buf[a:b]; the simulator "
    "runs your code on symbols, not numbers.",
    "MessageError": "a message did not fit its receive buffer, or went to a rank that never received it: sender "
    "and receiver must agree on the chunk (and so its length) at every step.",
    "WrongResultError": "some elements do not hold every rank's contribution exactly once.",
    "AlgorithmError": "your code raised an exception on some rank (see the message); fn(t, buf, op) must be a "
    "generator function that yields the transport's steps.",
}


def check_ring_allreduce(fn: Callable[..., Iterator[Step]], prove_at: int = PROOF_RANKS) -> LessonReport:
    """Check a learner's ring allreduce ``fn(t, buf, op)`` in the simulator; prove it at ``prove_at`` ranks.

    1. real data against numpy on p in 2, 3, 4, 5, 8 with sizes 0, 1, p-1, p, p+1, 7, 100, each
       under a deterministic and a random delivery order (bitwise identical ranks required);
    2. on a failure: the simulator's own message (deadlock cycle, truncated message, wrong
       elements), what that kind of failure means, and the first step at which the learner's
       schedule differs from the ring's;
    3. once those pass: the symbolic proof at ``prove_at`` ranks (every element of every rank
       holds every rank's data exactly once) and the busiest rank's bytes against 2(p-1)/p n.
    """
    from collectives import sim

    title = f"ring allreduce {getattr(fn, '__name__', 'fn')}"
    if not callable(fn):
        return LessonReport(title, False, [f"expected a generator function fn(t, buf, op), got {fn!r}"])
    runs = 0
    for p in RING_RANKS:
        for n in sorted({0, 1, p - 1, p, p + 1, 7, 100}):
            for seed in (None, 1):
                runs += 1
                try:
                    sim.check_real(fn, p, n, seed=seed)
                except sim.SimulationError as e:
                    kind = type(e).__name__
                    lines = [f"p={p}, n={n}, {'random' if seed else 'in-order'} delivery: {kind}", *str(e).splitlines()]
                    lines.append(f"what it means: {_HINTS.get(kind, '')}")
                    where = _explain_schedule(fn) if kind != "AlgorithmError" else []
                    return LessonReport(title, False, lines + where)
                except TypeError as e:  # not a generator, wrong signature
                    return LessonReport(title, False, [f"calling fn(t, buf, op) failed: {e}"])
    lines = [f"{runs} runs on real data match numpy (p in {', '.join(map(str, RING_RANKS))}; two delivery orders)"]
    n = 3 * prove_at + 5  # uneven chunks: the last ones are one element shorter
    try:
        sim.check_symbolic(fn, prove_at, n)
    except sim.SimulationError as e:
        return LessonReport(title, False, [*lines, f"symbolic proof at p={prove_at} failed:", *str(e).splitlines()])
    lines.append(f"proved at p={prove_at}, n={n}: every element of every rank holds each rank's data exactly once")
    p, nbytes = 8, 8 << 20
    sent = sim.simulate(fn, p, nbytes).busiest()["bytes_sent"]
    bound = 2 * (p - 1) / p * nbytes
    lines.append(
        f"busiest rank sends {sent / bound:.2f}x the lower bound 2(p-1)/p n at p={p}, n={nbytes >> 20} MiB"
        + (" (bandwidth-optimal)" if sent <= 1.01 * bound else "")
    )
    return LessonReport(title, True, lines)


# ---------------------------------------------------------------------------------------------
# Notebook 3, exercise 2: the ring's closed form


def ring_time(p: int, nbytes: float, alpha: float, beta: float, gamma: float) -> float:
    """The textbook ring: 2(p-1) alpha + 2(p-1)/p n beta + (p-1)/p n gamma (Thakur et al. 2005)."""
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * nbytes * beta + (p - 1) / p * nbytes * gamma


def check_ring_cost(fn: Callable[[int, float, float, float, float], float]) -> LessonReport:
    """Check ``fn(p, nbytes, alpha, beta, gamma)`` against the ring's closed form, term by term."""
    title = f"ring cost {getattr(fn, '__name__', 'fn')}"
    cases = [
        # (what the case isolates, p, nbytes, alpha, beta, gamma)
        ("latency only", 8, 0, 1e-6, 0.0, 0.0),
        ("bandwidth only", 8, 1 << 20, 0.0, 1e-9, 0.0),
        ("reduction only", 8, 1 << 20, 0.0, 0.0, 1e-9),
        ("all three, p=2", 2, 4096, 2e-6, 1e-10, 2e-10),
        ("all three, p=1000", 1000, 1 << 30, 2e-6, 1e-10, 2e-10),
        ("one rank", 1, 1 << 20, 2e-6, 1e-10, 2e-10),
    ]
    lines = []
    for what, p, n, a, b, g in cases:
        expected = ring_time(p, n, a, b, g)
        try:
            got = float(fn(p, n, a, b, g))
        except Exception as e:
            return LessonReport(title, False, [f"fn({p}, {n}, {a}, {b}, {g}) raised {type(e).__name__}: {e}"])
        if not np.isclose(got, expected, rtol=1e-9, atol=1e-15):
            lines.append(f"{what} (p={p}, n={n} B): got {got:.6g} s, expected {expected:.6g} s")
    if lines:
        lines.append("the ring: 2(p-1) messages of n/p bytes each, and (p-1) reductions of n/p bytes")
        return LessonReport(title, False, lines)
    return LessonReport(title, True, [f"{len(cases)} cases match 2(p-1) alpha + 2(p-1)/p n beta + (p-1)/p n gamma"])


# ---------------------------------------------------------------------------------------------
# Notebook 4: real ranks from a notebook, and the exercises on their measurements


@dataclass
class RanksRun:
    """What ``run_ranks`` brought back: each rank's printed output and its ``result`` value."""

    ranks: int
    returncode: int
    outputs: list[str]  # stdout + stderr, per rank
    results: list[Any]  # what each rank assigned to ``result`` (JSON round trip), or None
    launcher: str  # mpiexec's own output (errors from the launcher itself)

    def __str__(self) -> str:
        parts = [f"--- rank {r} ---\n{out.rstrip()}" for r, out in enumerate(self.outputs) if out.strip()]
        return "\n".join(parts) or "(no output)"


def mpiexec_path() -> str:
    """The ``mpiexec`` next to this Python (the pip MPICH wheel), else the one on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    found = str(local) if local.exists() else shutil.which("mpiexec")
    if found is None:
        raise RuntimeError("mpiexec not found: pip install -e '.[mpich]' installs MPICH's")
    return found


def launch_prefix(ranks: int) -> tuple[list[str], dict[str, str]]:
    """``mpiexec -n ranks`` and its environment, with what Open MPI needs on a laptop.

    Open MPI refuses more ranks than cores without ``--oversubscribe`` and refuses root without
    two environment variables; MPICH needs neither.
    """
    exe = mpiexec_path()
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    env = dict(os.environ)
    if "Open MPI" in version or "OpenRTE" in version:
        if os.geteuid() == 0:
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        return [exe, "--oversubscribe", "-n", str(ranks)], env
    return [exe, "-n", str(ranks)], env


def run_ranks(code: str, ranks: int, timeout: float = 120.0, check: bool = True) -> RanksRun:
    """Run ``code`` on ``ranks`` MPI processes and return each rank's output and ``result``.

    Every rank executes the same code (use ``MPI.COMM_WORLD.Get_rank()`` to tell them apart);
    a rank's stdout and stderr go to its own file, so their lines do not interleave; a variable
    ``result`` (anything JSON can hold) is sent back. After ``timeout`` seconds the processes
    are killed and ``TimeoutError`` names what was printed so far. With ``check`` a non-zero
    exit raises ``RuntimeError`` with every rank's output.
    """
    if not isinstance(ranks, int) or ranks < 1:
        raise ValueError(f"ranks must be a positive integer, got {ranks!r}")
    with tempfile.TemporaryDirectory(prefix="lesson-ranks-") as tmp:
        script = Path(tmp) / "lesson.py"
        script.write_text(code)
        launch, env = launch_prefix(ranks)
        cmd = [*launch, sys.executable, "-m", "collectives.lessons", tmp]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env
        )
        try:
            launcher, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the whole session: mpiexec and every rank it started
            launcher, _ = proc.communicate()
            partial = _collect(Path(tmp), ranks)
            raise TimeoutError(f"{ranks} ranks did not finish within {timeout:g} s; so far:\n{partial}") from None
        run = _collect(Path(tmp), ranks, proc.returncode, launcher)
    if check and run.returncode != 0:
        raise RuntimeError(f"mpiexec -n {ranks} exited with {run.returncode}:\n{run}\n{launcher}")
    return run


def _collect(tmp: Path, ranks: int, returncode: int = -9, launcher: str = "") -> RanksRun:
    outputs, results = [], []
    for r in range(ranks):
        out = tmp / f"rank{r}.out"
        res = tmp / f"rank{r}.json"
        outputs.append(out.read_text() if out.exists() else "")
        results.append(json.loads(res.read_text()) if res.exists() else None)
    return RanksRun(ranks, returncode, outputs, results, launcher)


def _run_rank(tmp: str) -> None:
    """One rank of ``run_ranks``: run lesson.py with stdout and stderr in this rank's file."""
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.Get_rank()
    folder = Path(tmp)
    with open(folder / f"rank{rank}.out", "w") as out:
        sys.stdout = sys.stderr = out
        try:
            namespace = runpy.run_path(str(folder / "lesson.py"), run_name="__main__")
        except BaseException:
            import traceback

            traceback.print_exc()
            out.flush()
            MPI.COMM_WORLD.Abort(1)  # one failed rank must not leave the others waiting forever
        if "result" in namespace:
            (folder / f"rank{rank}.json").write_text(json.dumps(namespace["result"], default=_jsonable))
        out.flush()


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"result holds a {type(x).__name__}, which JSON cannot carry back; use numbers, lists, dicts")


def busbw(nbytes: float, seconds: float, p: int) -> float:
    """nccl-tests' bus bandwidth of an allreduce: (n / t) x 2(p-1)/p, comparable across rank counts."""
    return nbytes / seconds * 2 * (p - 1) / p


def check_busbw(fn: Callable[[float, float, int], float]) -> LessonReport:
    """Check ``fn(nbytes, seconds, p)`` returns the allreduce bus bandwidth in bytes per second."""
    title = f"bus bandwidth {getattr(fn, '__name__', 'fn')}"
    cases = [(1 << 20, 1e-3, 2), (1 << 20, 1e-3, 4), (8 << 20, 2e-2, 8), (1000, 1e-6, 1)]
    lines = []
    for n, t, p in cases:
        expected = busbw(n, t, p)
        try:
            got = float(fn(n, t, p))
        except Exception as e:
            return LessonReport(title, False, [f"fn({n}, {t}, {p}) raised {type(e).__name__}: {e}"])
        if not np.isclose(got, expected, rtol=1e-9):
            hint = ""
            if np.isclose(got, n / t, rtol=1e-9):
                hint = " (that is algbw = n/t; busbw multiplies by 2(p-1)/p)"
            lines.append(f"n={n} B, t={t:g} s, p={p}: got {got:.6g} B/s, expected {expected:.6g} B/s{hint}")
    if lines:
        return LessonReport(title, False, lines)
    return LessonReport(title, True, [f"{len(cases)} cases match busbw = n/t x 2(p-1)/p"])


def check_alpha_beta_fit(fn: Callable[[np.ndarray, np.ndarray], tuple[float, float]]) -> LessonReport:
    """Check ``fn(sizes, seconds) -> (alpha, beta)`` recovers a latency and a time per byte from measurements.

    The data are made from known alpha and beta with a few percent of multiplicative noise, so
    an ordinary least-squares line through (size, time) recovers them; a fit that swaps the two,
    ignores the intercept, or returns bandwidth (1/beta) instead of beta is named.
    """
    title = f"alpha-beta fit {getattr(fn, '__name__', 'fn')}"
    rng = np.random.default_rng(7)
    sizes = np.array([0, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20], dtype=float)
    lines = []
    for alpha, beta in ((5e-6, 1 / 2e9), (50e-6, 1 / 0.125e9)):
        times = (alpha + beta * sizes) * (1 + 0.01 * rng.standard_normal(sizes.size))
        try:
            got = fn(sizes.copy(), times.copy())
        except Exception as e:
            return LessonReport(title, False, [f"fn(sizes, seconds) raised {type(e).__name__}: {e}"])
        try:
            a, b = (float(v) for v in got)
        except (TypeError, ValueError):
            return LessonReport(title, False, [f"expected a pair (alpha, beta), got {got!r}"])
        ok_a = abs(a - alpha) <= 0.3 * alpha
        ok_b = abs(b - beta) <= 0.05 * beta
        if not (ok_a and ok_b):
            hint = ""
            if abs(b * beta - 1) < 0.05 or (b > 1 and abs(1 / b - beta) <= 0.05 * beta):
                hint = " (beta looks like a bandwidth: return seconds per byte, 1/bandwidth)"
            elif abs(a - beta) <= 0.05 * beta or abs(b - alpha) <= 0.3 * alpha:
                hint = " (alpha and beta swapped?)"
            lines.append(f"true alpha={alpha:.3g} s, beta={beta:.3g} s/B: got alpha={a:.3g}, beta={b:.3g}{hint}")
    if lines:
        lines.append("time(n) = alpha + beta n: alpha is the intercept (seconds), beta the slope (seconds per byte)")
        return LessonReport(title, False, lines)
    return LessonReport(title, True, ["recovers alpha within 30% and beta within 5% from noisy timings, twice"])


if __name__ == "__main__":  # one rank of run_ranks: python -m collectives.lessons FOLDER
    _run_rank(sys.argv[1])
