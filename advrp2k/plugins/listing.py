"""What ``advrp2k list`` shows, read from the built-in plugins' sources without importing them.

Importing a plugin module loads torch (every attack needs it), which takes seconds; listing names
should not. A built-in module registers with ``@register_<kind>("name")`` on a class or function:
those decorators are found with ``ast``, and an attack's ``threats`` and ``library`` are read from
its class (or its base classes in the modules read) where they are literals. A module that
registers in a loop names, in the module-level string ``PLUGIN_LISTING = "module:function"``, a
torch-free function that lists its plugins (the torchattacks adapter does). When a module can be
read neither way, ``from_sources`` answers None and the caller imports the plugins instead; a
test checks that the two ways list the same plugins.
"""
from __future__ import annotations

import ast
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_THREATS = ("linf",)  # advrp2k.plugins.attack.Attack.threats
_KINDS = {"register_dataset": "datasets", "register_arch": "archs", "register_attack": "attacks",
          "register_defense": "defenses"}


@dataclass(frozen=True)
class Listed:
    """One plugin as the listing shows it."""

    kind: str  # "datasets", "archs", "attacks" or "defenses"
    name: str
    threats: tuple[str, ...] = DEFAULT_THREATS  # attacks only
    library: str = ""  # e.g. "torchattacks 3.5.1" for the adapter's attacks


def from_registries(skip_modules: tuple[str, ...] = ()) -> list[Listed]:
    """The plugins the registries hold now (whatever has been imported), but those registered by
    ``skip_modules``."""
    from advrp2k.plugins import registry

    out = []
    for kind, reg in registry.REGISTRIES.items():
        for info in reg.registered():
            if info.module in skip_modules:
                continue
            out.append(Listed(kind, info.name, tuple(getattr(info.obj, "threats", DEFAULT_THREATS)) if kind == "attacks"
                              else DEFAULT_THREATS, getattr(info.obj, "library", "") or ""))
    return out


def plugins_to_list() -> tuple[list[Listed], dict[str, str]]:
    """Every plugin and the load failures: the built-ins read from their sources and the
    installed packages' plugins imported (a broken one is reported), or, when the registries are
    already loaded (``-p``, in-process use) or a built-in cannot be read, the registries."""
    from advrp2k.plugins import registry

    if not registry.plugins_loaded():
        builtins = from_sources(registry.BUILTIN_MODULES)
        if builtins is not None:
            failures = registry.load_installed_plugins()
            return builtins + from_registries(skip_modules=registry.BUILTIN_MODULES), failures
    failures = registry.load_plugins()
    return from_registries(), failures


def from_sources(modules: tuple[str, ...]) -> list[Listed] | None:
    """The plugins ``modules`` register, read from their sources; None when one cannot be read."""
    trees = {}
    for module in modules:
        path = plugin_source(module)
        if path is None:
            return None
        try:
            trees[module] = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            return None
    classes = {node.name: node for tree in trees.values() for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    out = []
    for module, tree in trees.items():
        found, hooked = _registered(tree, classes), _listed_by_hook(tree)
        if not found and hooked is None:
            return None  # registers in a way this reader cannot see
        out.extend(found + (hooked or []))
    return out


def plugin_source(module: str) -> Path | None:
    """The ``.py`` file of ``module``, found by the import system's finders without importing it
    or its parent packages (``advrp2k.data`` imports torch)."""
    spec, parts = None, module.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        path = None if spec is None else spec.submodule_search_locations
        spec = next((found for finder in sys.meta_path if hasattr(finder, "find_spec")
                     for found in [finder.find_spec(name, path)] if found is not None), None)
        if spec is None:
            return None
    origin = getattr(spec, "origin", None)
    return Path(origin) if origin and origin.endswith(".py") else None


def _registered(tree: ast.Module, classes: dict[str, ast.ClassDef]) -> list[Listed]:
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            continue
        for deco in node.decorator_list:
            kind, name = _registration(deco)
            if kind is None:
                continue
            if kind == "attacks" and isinstance(node, ast.ClassDef):
                threats = _class_attr(node, "threats", classes, DEFAULT_THREATS)
                out.append(Listed(kind, name, tuple(threats), _class_attr(node, "library", classes, "")))
            else:
                out.append(Listed(kind, name))
    return out


def _registration(deco: ast.expr) -> tuple[str | None, str]:
    """``("attacks", "pgd")`` for ``@register_attack("pgd")`` (or ``@advrp2k.register_attack(...)``)."""
    if not (isinstance(deco, ast.Call) and deco.args and isinstance(deco.args[0], ast.Constant)
            and isinstance(deco.args[0].value, str)):
        return None, ""
    func = deco.func.attr if isinstance(deco.func, ast.Attribute) else getattr(deco.func, "id", "")
    return _KINDS.get(func), deco.args[0].value


def _class_attr(node: ast.ClassDef, attr: str, classes: dict[str, ast.ClassDef], default, seen=()):
    """A literal class attribute, looked up through base classes of the modules read."""
    for stmt in node.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == attr for t in targets) and stmt.value is not None:
            try:
                return ast.literal_eval(stmt.value)
            except ValueError:
                return default
    for base in node.bases:
        name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
        if name in classes and name not in seen and classes[name] is not node:
            return _class_attr(classes[name], attr, classes, default, (*seen, node.name))
    return default


def _listed_by_hook(tree: ast.Module) -> list[Listed] | None:
    """The plugins a module's ``PLUGIN_LISTING = "module:function"`` function lists (maybe none,
    e.g. torchattacks not installed); None when the module names no such function."""
    for stmt in tree.body:
        if (isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PLUGIN_LISTING" for t in stmt.targets)
                and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)):
            module, _, function = stmt.value.value.partition(":")
            return list(getattr(importlib.import_module(module), function)())
    return None
