"""Training recipes compared by the batch-scaling study, each with its learning-rate rule.

Shallue et al. (2019) showed that steps-to-target curves mean nothing unless the learning rate is
tuned at every batch size, so each recipe gives a *centre* rate for a batch B (its scaling rule
applied to a base rate tuned by hand at batch 8 on the digits MLP) and the study tries a small
log-spaced grid around it and keeps the best point.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from minidl import optim
from minidl.study.errors import StudyError

REFERENCE_BATCH = 8  # the batch at which each recipe's base rate was tuned


@dataclass(frozen=True)
class Recipe:
    """An optimizer, its base rate at batch 8, how the rate scales with batch, and its warmup."""

    name: str
    summary: str
    base_lr: float
    scaling: str  # "linear" (Goyal et al.) or "sqrt" (Krizhevsky 2014; the usual rule for LARS/LAMB)
    warmup: bool  # linear warmup from lr/10 (Goyal et al. 2017)

    def center_lr(self, batch: int) -> float:
        """The recipe's rate for ``batch``: its base rate scaled by its rule."""
        ratio = batch / REFERENCE_BATCH
        return self.base_lr * (ratio if self.scaling == "linear" else ratio**0.5)

    def lr_grid(self, batch: int, points: int, spacing: float) -> list[float]:
        """``points`` rates spaced by ``spacing`` (a factor) centred on :meth:`center_lr`."""
        c = self.center_lr(batch)
        return [c * spacing ** (i - (points - 1) / 2) for i in range(points)]

    def optimizer(self, params: Iterable[Any], lr: float) -> optim.Optimizer:
        if self.name == "sgd":
            return optim.SGD(params, lr=lr, momentum=0.0)
        if self.name == "momentum":
            return optim.SGD(params, lr=lr, momentum=0.9)
        if self.name == "lars":
            return optim.LARS(params, lr=lr, momentum=0.9)
        return optim.LAMB(params, lr=lr)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("sgd", "plain SGD, no momentum, constant rate (sqrt-scaled grid centre)", 0.2, "sqrt", False),
        Recipe(
            "momentum",
            "momentum 0.9 SGD, linear scaling rule and warmup (Goyal et al. 2017)",
            0.02,
            "linear",
            True,
        ),
        Recipe("lars", "LARS, momentum 0.9, trust ratio eta 0.001, warmup (You et al. 2017)", 0.5, "sqrt", True),
        Recipe("lamb", "LAMB, warmup (You et al. 2020)", 0.002, "sqrt", True),
    ]
}


def get_recipes(names: str | Iterable[str]) -> list[Recipe]:
    """Recipes by name ("sgd,momentum" or a list); the error lists the choices."""
    wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    wanted = [n for n in wanted if n]
    if not wanted:
        raise StudyError(f"no recipe given; expected some of {', '.join(RECIPES)}")
    for n in wanted:
        if n not in RECIPES:
            raise StudyError(f"unknown recipe {n!r}; expected one of {', '.join(RECIPES)}")
    return [RECIPES[n] for n in dict.fromkeys(wanted)]
