"""Perturbation budgets: the user's ``8/255`` spelling kept next to its float value."""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from advrp2k.core.errors import UsageError


@dataclass(frozen=True, order=True)
class Eps:
    """An l_inf budget in pixel units of [0, 1] images.

    Args:
        value: the budget as a float.
        label: how it is written in results, ``"8/255"`` or ``"0.03"``.
    """

    value: float
    label: str

    def __str__(self) -> str:
        return self.label


def parse_eps(text: str | float, allow_zero: bool = False) -> Eps:
    """Parse ``k/255`` (or any ``a/b``) or a float in (0, 1].

    Args:
        text: the user's spelling.
        allow_zero: accept 0 (used by tests and sanity checks, not by training).

    Raises:
        UsageError: when the text is not a number in range.
    """
    raw = str(text).strip()
    try:
        if "/" in raw:
            num, den = raw.split("/", 1)
            frac = Fraction(int(num.strip()), int(den.strip()))
            value = float(frac)
        else:
            value = float(raw)
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"eps {raw!r} is not a number: write it as k/255 (e.g. 8/255) or a float such as 0.031")
    low_ok = value >= 0 if allow_zero else value > 0
    if not math.isfinite(value) or not low_ok or value > 1:
        raise UsageError(f"eps {raw!r} = {value:g} is out of range: it must be in (0, 1] in pixel units, e.g. 4/255 or 8/255")
    return Eps(value, _label(value))


def _label(value: float) -> str:
    k = value * 255
    if abs(k - round(k)) < 1e-6:
        return f"{int(round(k))}/255"
    return f"{value:g}"


def parse_eps_list(text: str) -> list[Eps]:
    """Parse a comma-separated list such as ``4/255,8/255``; sorted ascending, deduplicated."""
    items = [parse_eps(t) for t in str(text).split(",") if t.strip()]
    if not items:
        raise UsageError("no eps given: write a list such as 4/255,8/255")
    return sorted(set(items))


def label_value(label: str) -> float:
    """The budget a results label (``"8/255"``, ``"0.03"``, ``"0"``; another threat model's
    ``"3"``, ``"2%"``) stands for: the one way every layer reads a label back. An unreadable
    label is ``inf``, so it sorts last."""
    text = str(label).strip()
    try:
        if text.endswith("%"):
            value = float(text[:-1]) / 100
        elif "/" in text:
            num, den = text.split("/", 1)
            value = float(Fraction(int(num.strip()), int(den.strip())))
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        return float("inf")
    return value if math.isfinite(value) and value >= 0 else float("inf")


def by_eps(labels) -> list[str]:
    """Labels in increasing budget."""
    return sorted(labels, key=label_value)
