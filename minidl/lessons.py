"""Exercise checks for the notebooks (``notebooks/01_autograd``, ``02_training``, ``05_data_parallel``).

Each ``check_...(answer)`` runs a learner's function against an oracle written independently
of the engine (numpy formulas, hand-computed cases) and says in words what is wrong: which
input, which step, and the likely mistake. The checks return a :class:`LessonReport` (print
it, or look at ``.ok``) instead of raising, so a notebook can show a failing answer and still
run top to bottom. (``collectives.lessons`` has the same report for the collectives lessons;
minidl may not import collectives outside ``minidl.distributed``, so each package has its own.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minidl import autograd, nn
from minidl.data import TensorDataset
from minidl.gradcheck import gradcheck, gradgradcheck
from minidl.tensor import Tensor


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


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _fmt(a: Any) -> str:
    return np.array2string(np.asarray(a, dtype=float), precision=4, separator=", ", max_line_width=200)


# ---------------------------------------------------------------------------------------------
# Notebook 1: a new op, and a Hessian-vector product


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)  # log(1 + e^x) without overflow


def check_softplus(op: Any) -> LessonReport:
    """Check a ``minidl.autograd.Function`` subclass ``op`` computing softplus(x) = log(1 + e^x).

    Forward against numpy (including x = +-50, where the naive formula overflows or loses all
    digits), the gradient against sigmoid(x) and by gradcheck; whether the backward is itself
    differentiable (written with Tensor ops) is reported but not required.
    """
    title = f"softplus op {_name(op)}"
    if not (isinstance(op, type) and issubclass(op, autograd.Function)):
        return LessonReport(title, False, [f"expected a subclass of minidl.autograd.Function, got {op!r}"])
    x = np.array([-40.0, -3.0, -0.5, 0.0, 0.7, 2.0, 40.0, 800.0])
    xt = Tensor(x.copy(), requires_grad=True)
    try:
        y = op.apply(xt)
    except Exception as e:
        return LessonReport(title, False, [f"forward raised {type(e).__name__}: {e}"])
    got = np.asarray(y.data, dtype=float)
    if got.shape != x.shape or not np.allclose(got, _softplus(x), rtol=1e-7, atol=0.0):
        lines = [f"forward at x = {_fmt(x)}", f"  gives    {_fmt(got)}", f"  expected {_fmt(_softplus(x))}"]
        if got.shape == x.shape and (not np.all(np.isfinite(got)) or not np.isclose(got[0], _softplus(x[0]))):
            lines.append(
                "log(1 + exp(x)) overflows for large x and rounds to 0 for very negative x: "
                "use max(x, 0) + log1p(exp(-|x|)) (or np.logaddexp(0, x))"
            )
        return LessonReport(title, False, lines)
    weights = np.linspace(0.5, 2.0, x.size)
    try:
        y.backward(Tensor(weights))
    except Exception as e:
        return LessonReport(title, False, [f"backward raised {type(e).__name__}: {e}"])
    expected = weights * np.exp(-np.logaddexp(0.0, -x))  # upstream x sigmoid(x), without overflow
    grad = None if xt.grad is None else np.asarray(xt.grad.data, dtype=float)
    if grad is None or grad.shape != x.shape or not np.allclose(grad, expected, rtol=1e-7, atol=1e-12):
        lines = [
            f"backward with upstream gradient {_fmt(weights)}",
            f"  gives    {_fmt(grad) if grad is not None else None}",
            f"  expected {_fmt(expected)} = upstream x sigmoid(x)",
        ]
        if grad is not None and grad.shape == x.shape and np.allclose(grad, expected / weights):
            lines.append("you return sigmoid(x) alone: multiply by the incoming gradient (the chain rule)")
        return LessonReport(title, False, lines)
    lines = [f"forward matches log(1 + e^x) at {x.size} points (x from -40 to 800); backward matches sigmoid(x)"]
    try:
        gradcheck(op.apply, [Tensor(np.array([-1.3, 0.2, 0.9]), requires_grad=True)])
        lines.append("gradcheck against float64 central differences: passed")
    except AssertionError as e:
        return LessonReport(title, False, [*lines, f"gradcheck: {e}"])
    try:
        gradgradcheck(op.apply, [Tensor(np.array([-1.3, 0.2, 0.9]), requires_grad=True)])
        lines.append("second derivatives also check out: your backward is written with Tensor ops")
    except Exception:
        lines.append("(optional) second derivatives unavailable: write backward with Tensor ops to get them")
    return LessonReport(title, True, lines)


def check_hvp(hvp: Callable[[Callable[[Tensor], Tensor], Tensor, Tensor], Tensor]) -> LessonReport:
    """Check ``hvp(f, x, v)`` returns the Hessian of scalar ``f`` at ``x`` times ``v``.

    The test function f(x) = sum(x^3) + (a . x)^2 has the Hessian diag(6x) + 2 a a^T, computed
    here in numpy, so the oracle never touches the engine.
    """
    title = f"Hessian-vector product {_name(hvp)}"
    rng = np.random.default_rng(3)
    a = rng.standard_normal(5)

    def f(x: Tensor) -> Tensor:
        return (x**3).sum() + ((x * Tensor(a)).sum()) ** 2

    lines = []
    for trial in range(2):
        x0, v0 = rng.standard_normal(5), rng.standard_normal(5)
        hessian = np.diag(6 * x0) + 2 * np.outer(a, a)
        expected = hessian @ v0
        x = Tensor(x0.copy(), requires_grad=True)
        try:
            out = hvp(f, x, Tensor(v0.copy()))
        except Exception as e:
            hint = ""
            if "requires_grad" in str(e) or "graph" in str(e):
                hint = " (the first gradient must keep its graph: minidl.grad(..., create_graph=True))"
            return LessonReport(title, False, [f"hvp raised {type(e).__name__}: {e}{hint}"])
        got = np.asarray(out.data if isinstance(out, Tensor) else out, dtype=float).reshape(-1)
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-8, atol=1e-10):
            lines = [f"at x = {_fmt(x0)}, v = {_fmt(v0)}", f"  got      {_fmt(got)}", f"  expected {_fmt(expected)}"]
            gradient = 3 * x0**2 + 2 * (a @ x0) * a
            if got.shape == expected.shape and np.allclose(got, gradient):
                lines.append("that is the gradient: differentiate (gradient . v) once more with respect to x")
            elif got.shape == expected.shape and np.allclose(got, gradient * v0):
                lines.append("that is gradient * v elementwise: take the dot product, then differentiate it")
            return LessonReport(title, False, lines)
        if trial == 0 and x.grad is not None:
            lines.append("note: x.grad was written; minidl.grad returns gradients without touching .grad")
    lines.insert(0, "matches (diag(6x) + 2 a a^T) v for f(x) = sum(x^3) + (a.x)^2 at two random points")
    return LessonReport(title, True, lines)


# ---------------------------------------------------------------------------------------------
# Notebook 2: the optimizer step, and evaluation


def sgd_momentum_reference(
    param: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float, momentum: float, weight_decay: float
) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's SGD: g = grad + wd * param; v = momentum * v + g; param = param - lr * v."""
    g = grad + weight_decay * param
    v = momentum * velocity + g
    return param - lr * v, v


def check_sgd_momentum(step: Callable[..., tuple[np.ndarray, np.ndarray]]) -> LessonReport:
    """Check ``step(param, grad, velocity, lr, momentum, weight_decay) -> (param, velocity)`` over 3 steps.

    Beside the right trajectory, the check follows those of the usual mistakes (no weight decay,
    no momentum, neither) and names the one the answer follows.
    """
    title = f"SGD with momentum {_name(step)}"
    rng = np.random.default_rng(11)
    lr, momentum, wd = 0.1, 0.9, 0.01
    start, grads = rng.standard_normal(4), rng.standard_normal((3, 4))
    variants = {
        "right": (momentum, wd),
        "weight decay is missing": (momentum, 0.0),
        "momentum is missing": (0.0, wd),
        "momentum and weight decay are missing": (0.0, 0.0),
    }
    paths = {}
    for name, (m, w) in variants.items():
        p, v, path = start.copy(), np.zeros(4), []
        for g in grads:
            p, v = sgd_momentum_reference(p, g, v, lr, m, w)
            path.append(p)
        paths[name] = np.array(path)
    p, v, yours = start.copy(), np.zeros(4), []
    for k, g in enumerate(grads):
        try:
            p, v = step(p.copy(), g.copy(), v.copy(), lr, momentum, wd)
        except Exception as e:
            return LessonReport(title, False, [f"step {k} raised {type(e).__name__}: {e}"])
        p, v = np.asarray(p, dtype=float), np.asarray(v, dtype=float)
        yours.append(p)
    yours_arr = np.array(yours)
    if np.allclose(yours_arr, paths["right"], rtol=1e-10, atol=1e-12):
        return LessonReport(title, True, ["3 steps match g = grad + wd*param; v = momentum*v + g; param -= lr*v"])
    k = next(i for i in range(3) if not np.allclose(yours_arr[i], paths["right"][i], rtol=1e-10, atol=1e-12))
    lines = [f"after step {k}: param {_fmt(yours_arr[k])}", f"  expected       {_fmt(paths['right'][k])}"]
    lines += [f"it looks like {name}" for name, path in paths.items() if np.allclose(yours_arr, path)]
    lines.append(
        f"with lr={lr}, momentum={momentum}, weight_decay={wd}: g = grad + wd * param; "
        "v = momentum * v + g; param -= lr * v"
    )
    return LessonReport(title, False, lines)


def check_accuracy(accuracy: Callable[[nn.Module, Any], float]) -> LessonReport:
    """Check ``accuracy(model, dataset) -> float`` (fraction of correct argmax predictions).

    The model is linear with hand-set weights followed by dropout, on 1000 samples whose correct
    fraction is known from numpy; forgetting ``model.eval()`` (dropout still on), dropping the
    last partial batch, or counting per batch instead of per sample gives a different number.
    """
    title = f"accuracy {_name(accuracy)}"
    rng = np.random.default_rng(5)
    n, d, k = 1000, 6, 4
    x = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal((k, d)).astype(np.float32)
    predicted = (x @ w.T).argmax(axis=1)
    labels = predicted.copy()
    wrong = rng.random(n) < 0.3  # about 70% are right, the rest shifted to another class
    labels[wrong] = (labels[wrong] + 1) % k
    expected = float(np.mean(predicted == labels))
    model = nn.Sequential(nn.Linear(d, k), nn.Dropout(0.9))
    model.state_dict()  # parameters exist; set them by hand
    linear = model[0]
    linear.weight.data[...] = w
    linear.bias.data[...] = 0.0
    model.train()
    try:
        got = float(accuracy(model, TensorDataset(x, labels)))
    except Exception as e:
        return LessonReport(title, False, [f"accuracy raised {type(e).__name__}: {e}"])
    if abs(got - expected) > 1e-9:
        lines = [f"got {got:.4f}, expected {expected:.4f} on {n} samples"]
        if model.training:
            lines.append("the model is still in training mode, so dropout zeroes 90% of the logits: call model.eval()")
        else:
            lines.append(
                f"count every sample once, the partial last batch too ({n} = 3 x 256 + 232), and divide by "
                f"the number of samples (an average of per-batch accuracies weights the last batch wrongly)"
            )
        return LessonReport(title, False, lines)
    return LessonReport(title, True, [f"{got:.4f} on {n} samples with dropout in the model, as numpy says"])


# ---------------------------------------------------------------------------------------------
# Notebook 5: the gradient noise scale, and exposed communication


def noise_scale_reference(g_small_sq: float, g_big_sq: float, b_small: int, b_big: int) -> float:
    """McCandlish et al. (2018), appendix A: unbiased |G|^2 and tr(Sigma) from two batch sizes, B_simple = tr/|G|^2."""
    g2 = (b_big * g_big_sq - b_small * g_small_sq) / (b_big - b_small)
    trace = (g_small_sq - g_big_sq) / (1 / b_small - 1 / b_big)
    return trace / g2


def check_noise_scale(fn: Callable[[float, float, int, int], float]) -> LessonReport:
    """Check ``fn(g_small_sq, g_big_sq, b_small, b_big) -> B_simple`` on exact expectations.

    The inputs are E|G_B|^2 = |G|^2 + tr(Sigma)/B for chosen |G|^2 and tr(Sigma), so the answer
    is tr(Sigma)/|G|^2 exactly.
    """
    title = f"gradient noise scale {_name(fn)}"
    lines = []
    for g2, trace, b_small, b_big in ((4.0, 400.0, 8, 64), (0.5, 10.0, 32, 128), (2.0, 8000.0, 4, 4096)):
        small, big = g2 + trace / b_small, g2 + trace / b_big
        expected = trace / g2
        try:
            got = float(fn(small, big, b_small, b_big))
        except Exception as e:
            return LessonReport(title, False, [f"raised {type(e).__name__}: {e}"])
        if not np.isclose(got, expected, rtol=1e-9):
            line = f"|G|^2={g2}, tr(Sigma)={trace}, B={b_small} and {b_big}: got {got:.6g}, expected {expected:.6g}"
            if np.isclose(got, 1 / expected, rtol=1e-9):
                line += " (inverted: B_simple = tr(Sigma) / |G|^2)"
            elif np.isclose(got, trace / big, rtol=1e-9) or np.isclose(got, trace / small, rtol=1e-9):
                line += " (|G|^2 must be the unbiased estimate, not one batch's squared norm)"
            lines.append(line)
    if lines:
        lines.append("E|G_B|^2 = |G|^2 + tr(Sigma)/B: solve the two equations for |G|^2 and tr(Sigma)")
        return LessonReport(title, False, lines)
    return LessonReport(title, True, ["recovers tr(Sigma)/|G|^2 from two batch sizes in 3 cases"])


def exposed_reference(ready: Sequence[float], durations: Sequence[float], backward_end: float) -> float:
    """One communication thread, buckets in order: each starts when ready and when the previous is done."""
    finish = 0.0
    for r, d in zip(ready, durations):
        finish = max(finish, r) + d
    return max(0.0, finish - backward_end)


EXPOSED_CASES = (
    # (what it shows, bucket ready times, allreduce durations, end of backward, exposed: worked by hand)
    ("all hidden", (1.0, 2.0, 3.0), (0.5, 0.5, 0.5), 4.0, 0.0),
    ("the last bucket sticks out", (1.0, 2.0, 3.0), (0.5, 0.5, 2.0), 4.0, 1.0),
    ("a queue builds up", (1.0, 1.5, 2.0), (1.0, 1.0, 1.0), 2.5, 1.5),
    ("one bucket, sent at the end", (4.0,), (3.0,), 4.0, 3.0),
    ("a gap lets the queue drain", (0.0, 5.0), (2.0, 1.0), 5.5, 0.5),
)


def check_exposed_comm(fn: Callable[[Sequence[float], Sequence[float], float], float]) -> LessonReport:
    """Check ``fn(ready, durations, backward_end) -> exposed seconds`` on cases worked out by hand."""
    title = f"exposed communication {_name(fn)}"
    lines = []
    for what, ready, durations, end, expected in EXPOSED_CASES:
        try:
            got = float(fn(list(ready), list(durations), end))
        except Exception as e:
            return LessonReport(title, False, [f"{what}: raised {type(e).__name__}: {e}"])
        if not np.isclose(got, expected, atol=1e-12):
            line = f"{what}: ready {list(ready)}, durations {list(durations)}, backward ends at {end}: "
            line += f"got {got:g}, expected {expected:g}"
            if np.isclose(got, max(0.0, ready[-1] + durations[-1] - end)):
                line += " (only the last bucket counted: a bucket also waits for the one before it)"
            lines.append(line)
    if lines:
        lines.append("one comm thread: start_i = max(ready_i, finish_(i-1)); exposed = max(0, last finish - end)")
        return LessonReport(title, False, lines)
    return LessonReport(title, True, [f"{len(EXPOSED_CASES)} hand-worked schedules match"])


# ---------------------------------------------------------------------------------------------
# Notebook 6: steps to target vs batch, and the best number of workers


def steps_reference(batch: float, s_min: float, b_crit: float) -> float:
    """McCandlish et al. (2018): S(B) = S_min (1 + B_crit / B), from (S/S_min - 1)(E/E_min - 1) = 1 with E = S B."""
    return s_min * (1 + b_crit / batch)


def check_steps_to_target(fn: Callable[[float, float, float], float]) -> LessonReport:
    """Check ``fn(batch, s_min, b_crit) -> steps`` against S_min (1 + B_crit / B) on hand-computed cases."""
    title = f"steps to target {_name(fn)}"
    cases = (  # (batch, S_min, B_crit, steps worked by hand)
        (100, 1000, 100, 2000.0),  # at the critical batch: twice the minimum
        (10, 1000, 100, 11000.0),  # far below: ten times the samples buy ten times fewer steps
        (10_000, 1000, 100, 1010.0),  # far above: steps barely fall
        (64, 24, 40, 39.0),
    )
    lines = []
    for batch, s_min, b_crit, expected in cases:
        try:
            got = float(fn(batch, s_min, b_crit))
        except Exception as e:
            return LessonReport(title, False, [f"raised {type(e).__name__}: {e}"])
        if not np.isclose(got, expected, rtol=1e-9):
            line = f"B={batch}, S_min={s_min}, B_crit={b_crit}: got {got:g} steps, expected {expected:g}"
            if np.isclose(got, s_min * (1 + batch / b_crit), rtol=1e-9):
                line += " (that is E/E_min, the samples: steps fall as the batch grows)"
            lines.append(line)
    if lines:
        lines.append("S(B) = S_min (1 + B_crit / B): at B = B_crit, twice the minimum number of steps")
        return LessonReport(title, False, lines)
    return LessonReport(title, True, [f"{len(cases)} hand-computed cases match S_min (1 + B_crit / B)"])


def best_workers_reference(
    workers: Sequence[int], per_worker_batch: int, s_min: float, b_crit: float, step_time: Callable[[int], float]
) -> int:
    """The worker count with the least time to target: steps at batch p b times the step time at p workers."""
    times = [steps_reference(p * per_worker_batch, s_min, b_crit) * step_time(p) for p in workers]
    return int(workers[int(np.argmin(times))])


def check_best_workers(fn: Callable[..., int]) -> LessonReport:
    """Check ``fn(workers, per_worker_batch, s_min, b_crit, step_time) -> p`` on three interconnects.

    Each case is a ring allreduce of 4 MB of gradients after 10 ms of compute, on a link from fast
    to slow; the answer minimises steps x step time. Minimising either factor alone is named.
    """
    title = f"best number of workers {_name(fn)}"
    workers = [2**k for k in range(13)]
    lines = []
    for link, alpha, bandwidth in (("fast", 1e-6, 25e9), ("ethernet", 50e-6, 1.25e9), ("slow", 1e-3, 0.05e9)):

        def step_time(p: int, alpha: float = alpha, bandwidth: float = bandwidth) -> float:
            ring = 2 * (p - 1) * alpha + 2 * (p - 1) / p * 4e6 / bandwidth
            return 0.010 + ring

        expected = best_workers_reference(workers, 32, 500.0, 2000.0, step_time)
        try:
            got = fn(list(workers), 32, 500.0, 2000.0, step_time)
        except Exception as e:
            return LessonReport(title, False, [f"raised {type(e).__name__}: {e}"])
        if got != expected:
            line = f"{link} link (alpha {alpha * 1e6:g} us, {bandwidth / 1e9:g} GB/s): got {got}, expected {expected}"
            if got == workers[int(np.argmin([step_time(p) for p in workers]))]:
                line += " (the fastest step alone: more workers also mean fewer steps)"
            elif got == workers[-1]:
                line += " (the fewest steps alone: communication grows with the workers)"
            lines.append(line)
    if lines:
        lines.append("time to target(p) = S(p x per_worker_batch) x step_time(p); pick the p that minimises it")
        return LessonReport(title, False, lines)
    return LessonReport(title, True, ["the best worker count matches on a fast, an ethernet and a slow link"])
