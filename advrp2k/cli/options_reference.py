"""The built-in plugins' options page (``docs/plugin-options.md``), rendered from the plugins'
own ``options`` declarations (the one place an option is written).

Regenerate it with ``python -m advrp2k.cli.options_reference > docs/plugin-options.md``; a test
fails when the committed page differs from the declarations.
"""
from __future__ import annotations

from advrp2k.plugins import registry as _registry
from advrp2k.plugins.options import Option, declared_options


def _default(opt: Option) -> str:
    if opt.default is not None:
        return f"`{opt.default}`"
    return "derived" if opt.derive is not None else "unset"


def _allowed(opt: Option) -> str:
    if opt.choices:
        return " / ".join(f"`{c}`" for c in opt.choices)
    if opt.min is not None and opt.max is not None:
        return f"{_number(opt.min)} to {_number(opt.max)}"
    return ""


def _number(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _table(kind: str, name: str, cls) -> list[str]:
    declared = declared_options(cls)
    head = f"### {kind} `{name}`"
    if not declared:
        return [head, "", "No options.", ""]
    rows = [head, "", "| option | type | default | allowed | what it does |", "| --- | --- | --- | --- | --- |"]
    rows += [f"| `{key}` | {opt.type.__name__} | {_default(opt)} | {_allowed(opt)} | {opt.help} |"
             for key, opt in declared.items()]
    return rows + [""]


def render() -> str:
    """One table per built-in defense and attack (the ``ta:`` family lists its own with
    ``advrp2k plugins``: its options come from the installed torchattacks version)."""
    parts = ["# Built-in plugins' options", "",
             "Generated from each plugin's `options` declaration by",
             "`python -m advrp2k.cli.options_reference > docs/plugin-options.md`; a test keeps it equal.",
             "Set them with `--defense-arg KEY=VALUE` and `--attack-arg NAME.KEY=VALUE`. Every resolved value",
             "(given, derived or default) is recorded in the entry and keys the cached model or results.", ""]
    for kind, registry in (("defense", _registry.DEFENSES), ("attack", _registry.ATTACKS)):
        for name in registry.names():
            info = registry.info(name)
            if info.module.startswith("advrp2k.") and not name.startswith("ta:"):
                parts += _table(kind, name, info.obj)
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
