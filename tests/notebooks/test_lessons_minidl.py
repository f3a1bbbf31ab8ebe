"""minidl.lessons: every check passes the reference solution and fails each planted mistake, saying why."""

import numpy as np
import pytest

import minidl
from minidl import lessons
from minidl.data import DataLoader
from notebooks.solutions import s01_autograd as s1
from notebooks.solutions import s02_training as s2
from notebooks.solutions import s05_data_parallel as s5
from notebooks.solutions import s06_large_batch as s6


def fails_with(report, *phrases):
    assert not report.ok, str(report)
    text = str(report)
    for phrase in phrases:
        assert phrase in text, text


# --- notebook 1


def test_softplus_solution_passes_with_double_backward():
    report = lessons.check_softplus(s1.Softplus)
    assert report.ok, str(report)
    assert "second derivatives also check out" in str(report)


class NaiveSoftplus(minidl.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        with np.errstate(over="ignore"):
            return np.log(1 + np.exp(x))

    @staticmethod
    def backward(ctx, grad):
        return grad * minidl.sigmoid(ctx.inputs[0])


class NoChainRule(s1.Softplus):
    @staticmethod
    def backward(ctx, grad):
        return minidl.sigmoid(ctx.inputs[0])


class NumpyBackward(s1.Softplus):
    @staticmethod
    def backward(ctx, grad):
        x = ctx.inputs[0].data
        return grad.data / (1 + np.exp(-x))


def test_softplus_overflowing_forward_is_named():
    fails_with(lessons.check_softplus(NaiveSoftplus), "forward", "overflows")


def test_softplus_missing_chain_rule_is_named():
    fails_with(lessons.check_softplus(NoChainRule), "multiply by the incoming gradient")


def test_softplus_numpy_backward_passes_but_says_no_second_derivatives():
    report = lessons.check_softplus(NumpyBackward)
    assert report.ok, str(report)
    assert "second derivatives unavailable" in str(report)


def test_softplus_rejects_a_plain_function():
    fails_with(lessons.check_softplus(np.logaddexp), "subclass of minidl.autograd.Function")


def test_hvp_solution_passes():
    assert lessons.check_hvp(s1.hvp).ok


def test_hvp_returning_the_gradient_is_named():
    def gradient_only(f, x, v):
        return minidl.grad(f(x), x)[0]

    fails_with(lessons.check_hvp(gradient_only), "that is the gradient")


def test_hvp_without_create_graph_is_named():
    def no_create_graph(f, x, v):
        (g,) = minidl.grad(f(x), x)
        return minidl.grad((g * v).sum(), x)[0]

    fails_with(lessons.check_hvp(no_create_graph), "create_graph=True")


# --- notebook 2


def test_sgd_solution_passes():
    assert lessons.check_sgd_momentum(s2.sgd_momentum_step).ok


@pytest.mark.parametrize(
    ("momentum_on", "decay_on", "named"),
    [(True, False, "weight decay is missing"), (False, True, "momentum is missing"), (False, False, "are missing")],
)
def test_sgd_mistakes_are_named(momentum_on, decay_on, named):
    def step(p, g, v, lr, momentum, wd):
        return s2.sgd_momentum_step(p, g, v, lr, momentum if momentum_on else 0.0, wd if decay_on else 0.0)

    fails_with(lessons.check_sgd_momentum(step), named)


def test_accuracy_solution_passes():
    assert lessons.check_accuracy(s2.accuracy).ok


def test_accuracy_in_training_mode_is_named():
    def train_mode(model, dataset):
        correct = sum(int((model(x).data.argmax(1) == y.data).sum()) for x, y in DataLoader(dataset, 256))
        return correct / len(dataset)

    fails_with(lessons.check_accuracy(train_mode), "model.eval()")


def test_accuracy_dropping_the_last_batch_fails():
    def drop_last(model, dataset):
        model.eval()
        loader = DataLoader(dataset, 256, drop_last=True)
        return sum(int((model(x).data.argmax(1) == y.data).sum()) for x, y in loader) / len(dataset)

    fails_with(lessons.check_accuracy(drop_last), "partial last batch")


# --- notebook 5


def test_noise_scale_solution_passes():
    assert lessons.check_noise_scale(s5.noise_scale).ok


def test_noise_scale_inverted_is_named():
    fails_with(lessons.check_noise_scale(lambda *a: 1 / s5.noise_scale(*a)), "inverted")


def test_noise_scale_biased_norm_is_named():
    def biased(g_small_sq, g_big_sq, b_small, b_big):
        trace = (g_small_sq - g_big_sq) / (1 / b_small - 1 / b_big)
        return trace / g_big_sq  # one batch's norm still holds tr(Sigma)/B_big

    fails_with(lessons.check_noise_scale(biased), "unbiased")


def test_noise_scale_oracle_matches_a_hand_computed_case():
    # |G|^2 = 1, tr = 100: E|G_10|^2 = 11, E|G_100|^2 = 2 -> B_simple = 100
    assert lessons.noise_scale_reference(11.0, 2.0, 10, 100) == pytest.approx(100.0)


def test_exposed_solution_passes():
    assert lessons.check_exposed_comm(s5.exposed_comm).ok


def test_exposed_last_bucket_only_is_named():
    fails_with(lessons.check_exposed_comm(lambda r, d, e: max(0.0, r[-1] + d[-1] - e)), "only the last bucket")


def test_exposed_cases_agree_with_the_reference_schedule():
    for _, ready, durations, end, by_hand in lessons.EXPOSED_CASES:
        assert lessons.exposed_reference(ready, durations, end) == pytest.approx(by_hand)


@pytest.mark.parametrize(
    "check",
    [
        lessons.check_hvp,
        lessons.check_sgd_momentum,
        lessons.check_accuracy,
        lessons.check_noise_scale,
        lessons.check_exposed_comm,
        lessons.check_steps_to_target,
        lessons.check_best_workers,
    ],
    ids=lambda c: c.__name__,
)
def test_an_unfinished_answer_is_reported_not_raised(check):
    def unfinished(*args):
        raise NotImplementedError("exercise")

    fails_with(check(unfinished), "raised NotImplementedError")


def test_an_unfinished_op_is_reported_not_raised():
    class Unfinished(minidl.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            raise NotImplementedError("exercise")

    fails_with(lessons.check_softplus(Unfinished), "raised NotImplementedError")


# --- notebook 6


def test_steps_solution_passes_and_samples_instead_of_steps_is_named():
    assert lessons.check_steps_to_target(s6.steps_to_target).ok
    fails_with(lessons.check_steps_to_target(lambda b, s, c: s * (1 + b / c)), "that is E/E_min")


def test_best_workers_solution_passes():
    assert lessons.check_best_workers(s6.best_workers).ok


def test_best_workers_by_step_time_alone_is_named():
    def fastest_step(workers, b, s_min, b_crit, step_time):
        return min(workers, key=step_time)

    fails_with(lessons.check_best_workers(fastest_step), "the fastest step alone")


def test_best_workers_by_steps_alone_is_named():
    fails_with(lessons.check_best_workers(lambda workers, *rest: max(workers)), "the fewest steps alone")


def test_best_workers_reference_by_hand():
    # S_min 100, B_crit 100, batch 10 per worker; step 1 s + 0.1 s per extra worker:
    # p=1: 1100 x 1.0 = 1100; p=10: 200 x 1.9 = 380; p=100: 110 x 10.9 = 1199 -> 10
    assert lessons.best_workers_reference([1, 10, 100], 10, 100, 100, lambda p: 1 + 0.1 * (p - 1)) == 10
