"""Pack sizes read from the attribute table's ``size`` field, one reading for all users.

The ticket-switching goal (evaluator) and its summary (analyses) both ask "is this sibling a
smaller pack?"; both read ``250ml``, ``1L``, ``500g`` here so they cannot disagree. Millilitres
and grams are compared alike: a sibling is a proxy for a cheaper item, and reported as one.
"""
from __future__ import annotations

import re

_UNITS = {"ml": 1.0, "l": 1000.0, "g": 1.0, "kg": 1000.0}


def pack_amount(size: str) -> float | None:
    """``250ml`` -> 250, ``1L`` -> 1000, ``500g`` -> 500 (ml and g alike); None when unreadable."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ml|l|g|kg)\s*", str(size).lower())
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None


def smaller_pack(mine: str, theirs: str) -> bool:
    """Both sizes readable and ``theirs`` the smaller pack."""
    a, b = pack_amount(mine), pack_amount(theirs)
    return a is not None and b is not None and b < a
