"""Plugin options, declared once with a type, a range and a default, and checked before any work.

A plugin declares its options as a class attribute, and only there::

    options = {"steps": Option(int, 7, min=1, max=1000, help="PGD steps per batch"),
               "step_size": Option(float, derive=lambda o, eps: 2.5 * eps.value / o["steps"])}

Everything else follows from the declaration: ``--defense-arg`` values (and attack options) are
validated against it before any data is read (a wrong type, a value out of range or an unknown
name is one clear line); the resolved values (given, else derived, else the default) become the
plugin's attributes (``self.steps``) and its recorded ``config()``, which keys the training
cache and the per-example results; ``advrp2k plugins`` and the docs list it. So an option
cannot be left out of a cache key by a forgotten ``config()``.
A plugin that declares nothing (an older third-party plugin) gets its options derived from
its ``__init__`` signature: the type of each default, no range.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

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
        derive: ``(values, eps) -> value`` for an option left unset whose value follows from the
            budget and the options declared before it (PGD's step size); the derived value is
            what runs and what is recorded.
    """

    type: type
    default: Any = None
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    help: str = ""
    derive: Callable | None = None

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
    """The plugin's declared ``options``, else options derived from its ``__init__`` signature.

    The nearest class (in method resolution order) that declares ``options`` or defines
    ``__init__`` decides: an older plugin that names its options in its own ``__init__`` gets
    them from there, even though the contract's base classes declare ``options = {}``.
    """
    init = _deciding_init(cls)
    if init is None:
        return getattr(cls, "options", None) or {}
    out = {}
    try:
        params = inspect.signature(init).parameters.values()
    except (TypeError, ValueError):
        return out
    for p in params:
        if p.name in ("self", "eps") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = None if p.default is inspect.Parameter.empty else p.default
        kind = type(default) if type(default) in _TYPE_NAMES else _annotation_type(p.annotation)
        out[p.name] = Option(kind or str, default)
    return out


def _deciding_init(cls):
    """``None`` when ``cls`` declares its options; else the ``__init__`` they come from."""
    if not isinstance(cls, type):
        return cls  # a factory function: its signature
    for klass in cls.__mro__:
        if isinstance(vars(klass).get("options"), dict):
            return None
        if "__init__" in vars(klass) and klass is not object:
            return klass.__init__
    return None


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
    init = _deciding_init(cls)
    if init is None:
        return False
    try:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(init).parameters.values())
    except (TypeError, ValueError):
        return True

def resolve_options(cls, given: dict, eps=None) -> dict:
    """Every declared option of ``cls`` with its value: given, else derived, else the default.

    Options are resolved in declaration order, so a ``derive`` sees the options above it. An
    undeclared name in ``given`` (a plugin that takes ``**kwargs``) is kept as given.
    """
    values: dict = {}
    for key, option in declared_options(cls).items():
        if key in given and given[key] is not None:
            values[key] = given[key]
        elif option.derive is not None and eps is not None:
            values[key] = option.type(option.derive(dict(values), eps))
        else:
            values[key] = given.get(key, option.default)
    return {**values, **{k: v for k, v in given.items() if k not in values}}


def take_options(plugin, given: dict, eps=None) -> None:
    """Resolve ``given`` for ``plugin``, keep the values as ``plugin.option_values`` (what its
    ``config()`` records) and set each as an attribute (``plugin.steps``).

    Raises:
        TypeError: a name the plugin does not declare, or an option that would hide one of the
            class's own attributes (``config``, ``eps``).
    """
    cls = type(plugin)
    declared = declared_options(cls)
    unknown = sorted(set(given) - set(declared))
    if unknown and not _takes_any(cls):
        raise TypeError(f"{cls.__name__} takes no options {unknown}; it declares {sorted(declared)}")
    plugin.option_values = resolve_options(cls, given, eps)
    for key, value in plugin.option_values.items():
        if key in declared:
            if hasattr(cls, key):
                raise TypeError(f"{cls.__name__}: option {key!r} would hide the attribute {cls.__name__}.{key}")
            setattr(plugin, key, value)
