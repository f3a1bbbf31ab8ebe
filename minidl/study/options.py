"""Argument types shared by the study's commands: integer lists and power-of-two ranges."""

from __future__ import annotations

import argparse


def int_list(text: str) -> tuple[int, ...]:
    """Comma-separated integers (an argparse type)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return values


def power_range(text: str) -> tuple[int, ...]:
    """Sizes as LO..HI (the powers of two from LO to HI, e.g. 8..1024) or a list (8,32,128)."""
    if ".." in text:
        lo, _, hi = text.partition("..")
        try:
            a, b = int(lo), int(hi)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected LO..HI or a comma-separated list, got {text!r}") from None
        if a < 1 or b < a:
            raise argparse.ArgumentTypeError(f"expected 1 <= LO <= HI in {text!r}")
        values, v = [], a
        while v <= b:
            values.append(v)
            v *= 2
        return tuple(values)
    return int_list(text)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where there is none or the help text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False) or "default" in text:
            return text
        return super()._get_help_string(action) or text
