"""Plugin options, declared with a type, a range and a default, and checked before any work.

A plugin declares its options as a class attribute::

    options = {"steps": Option(int, 7, min=1, max=1000, help="PGD steps per batch")}

``--defense-arg`` values (and attack options) are validated against the declaration before
any data is read: a wrong type, a value out of range or an unknown name is one clear line.
A plugin that declares nothing (an older third-party plugin) gets its options derived from
its ``__init__`` signature: the type of each default, no range.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from advrp2k.core.errors import UsageError

_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


@dataclass(frozen=True)
class Option:
    """One plugin option.

    Args:
        type: int, float, bool or str.
        default: the value when not given; ``None`` means "derived" (say how in ``help``).
        min, max: inclusive bounds for numbers.
        choices: the allowed values for strings.
        help: one line for ``advrp2k plugins``.
    """

    type: type
    default: Any = None
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    help: str = ""

    def describe(self) -> str:
        parts = [self.type.__name__]
        if self.min is not None or self.max is not None:
            parts.append(f"in [{_fmt(self.min)}, {_fmt(self.max)}]")
        if self.choices:
            parts.append("one of " + "|".join(map(str, self.choices)))
        parts.append(f"default {self.default if self.default is not None else 'auto'}")
        return ", ".join(parts) + (f": {self.help}" if self.help else "")

    def check(self, plugin: str, key: str, value: Any) -> Any:
        """The value converted to ``type``, or a UsageError saying what is allowed."""
        where = f"option {key!r} of {plugin}"
        if value is None:
            if self.default is None:
                return None
            raise UsageError(f"{where} cannot be empty; it is {self.describe()}")
        ok = isinstance(value, self.type) and not (self.type is not bool and isinstance(value, bool))
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise UsageError(f"{where} must be {_TYPE_NAMES.get(self.type, self.type.__name__)}, "
                             f"got {_short(value)}")
        if self.min is not None and value < self.min or self.max is not None and value > self.max:
            raise UsageError(f"{where} must be in [{_fmt(self.min)}, {_fmt(self.max)}], got {_short(value)}")
        if self.choices and value not in self.choices:
            raise UsageError(f"{where} must be one of {', '.join(map(str, self.choices))}, got {_short(value)}")
        return value


def _fmt(bound) -> str:
    return "-inf" if bound is None else f"{bound:g}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def declared_options(cls) -> dict[str, Option]:
    """The plugin's declared ``options``, else options derived from its ``__init__`` signature."""
    declared = getattr(cls, "options", None)
    if isinstance(declared, dict):
        return declared
    out = {}
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return out
    for p in params:
        if p.name in ("self", "eps") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = None if p.default is inspect.Parameter.empty else p.default
        kind = type(default) if type(default) in _TYPE_NAMES else _annotation_type(p.annotation)
        out[p.name] = Option(kind or str, default)
    return out


def _annotation_type(annotation) -> type | None:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return next((t for t in (bool, int, float, str) if text.split("|")[0].strip() == t.__name__), None)


def validate_options(plugin: str, cls, given: dict) -> dict:
    """``given`` checked against ``cls``'s declared options: names, types and ranges.

    Raises:
        UsageError: an unknown name, a wrong type or a value out of range, saying what is allowed.
    """
    declared = declared_options(cls)
    unknown = sorted(set(given) - set(declared))
    if unknown and not _takes_any(cls):
        known = ", ".join(f"{k} ({o.describe()})" for k, o in declared.items()) or "none"
        raise UsageError(f"{plugin} has no option {', '.join(map(repr, unknown))}; its options: {known}")
    return {k: declared[k].check(plugin, k, v) if k in declared else v for k, v in given.items()}


def _takes_any(cls) -> bool:
    if isinstance(getattr(cls, "options", None), dict):
        return False
    try:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return True
