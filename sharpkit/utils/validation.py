"""Argument checks that raise with a message (never ``assert``: it vanishes under ``python -O``).

Every message follows one template: what was wrong, what is allowed, how to fix it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable


def check_choice(argument: str, value: object, allowed: Iterable[object], hint: str = "") -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        message = f"Expected argument `{argument}` to be one of {choices}, but got {value!r}."
        if hint:
            message += f" {hint}"
        raise ValueError(message)


def check_positive(argument: str, value: float, allow_zero: bool = False, integer: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite, (strictly) positive number (an integer if asked).

    Infinity is refused as well as NaN: ``inf > 0`` holds, yet an infinite learning rate or radius only
    yields non-finite weights.
    """
    kind = "an integer" if integer else "a finite number"
    bound = "at least 0" if allow_zero else "larger than 0"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if integer:
        ok = ok and isinstance(value, int)
    if ok and isinstance(value, float):
        ok = math.isfinite(value)
    if ok:
        ok = value >= 0 if allow_zero else value > 0
    if not ok:
        raise ValueError(f"Expected argument `{argument}` to be {kind} {bound}, but got {value!r}.")
