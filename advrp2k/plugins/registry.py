"""One registry per plugin kind, filled by decorators (timm's register_model is the model).

Built-in plugins and third-party plugins register the same way. Third-party packages are
found through the ``advrp2k`` entry-point group: each entry point names a module, and
importing it runs its ``@register_*`` decorators (pytest's ``pytest11`` group works so).
"""
from __future__ import annotations

import fnmatch
import importlib
import logging
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

from advrp2k._version import __version__
from advrp2k.core.errors import PluginError, UnknownPluginError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "advrp2k"
#: Set to 1 to skip entry-point autoloading (hermetic runs), like PYTEST_DISABLE_PLUGIN_AUTOLOAD.
AUTOLOAD_ENV = "ADVRP2K_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_MODULES = (
    "advrp2k.data.source",
    "advrp2k.data.synth",
    "advrp2k.models.architectures",
    "advrp2k.attacks.pgd",
    "advrp2k.attacks.fgsm",
    "advrp2k.attacks.autoattack",
    "advrp2k.attacks.malt",
    "advrp2k.attacks.square",
    "advrp2k.attacks.shelf",
    "advrp2k.attacks.patch",
    "advrp2k.attacks.torchattacks_adapter",
    "advrp2k.defenses.standard",
    "advrp2k.defenses.madry",
    "advrp2k.defenses.fast_fgsm",
    "advrp2k.defenses.external",
)


@dataclass
class PluginInfo:
    """A registered plugin and where it came from (recorded in every result)."""

    kind: str
    name: str
    obj: Any
    module: str
    distribution: str = "unknown"
    version: str = "unknown"

    def provenance(self) -> dict:
        return {"name": self.name, "module": self.module, "package": self.distribution, "version": self.version}


@dataclass
class Registry:
    kind: str
    _plugins: dict[str, PluginInfo] = field(default_factory=dict)
    #: Callables ``name -> message or None`` that explain an unknown name better than a list
    #: of known ones (the torchattacks adapter explains a ``ta:`` attack of another norm).
    hints: list = field(default_factory=list)

    def register(self, name: str) -> Callable:
        """Decorator: register a class or factory under ``name`` (lower snake case)."""

        def decorate(obj):
            if name in self._plugins:
                prev = self._plugins[name]
                raise PluginError(
                    f"{self.kind} {name!r} is registered twice: by {prev.module} ({prev.distribution}) "
                    f"and by {obj.__module__}; rename one of them")
            dist, version = _distribution_of(obj.__module__)
            self._plugins[name] = PluginInfo(self.kind, name, obj, obj.__module__, dist, version)
            if isinstance(obj, type) and "plugin_name" not in vars(obj):
                obj.plugin_name = name  # what its records call it (an attack's config "name")
            return obj

        return decorate

    def info(self, name: str) -> PluginInfo:
        load_plugins()
        if name not in self._plugins:
            for hint in self.hints:
                message = hint(name)
                if message:
                    raise UnknownPluginError(message)
            # A name whose package failed to load is a broken plugin (exit 1), not a typo (exit 2).
            raise (PluginError if name in _load_failures else UnknownPluginError)(self._unknown(name))
        return self._plugins[name]

    def _unknown(self, name: str) -> str:
        """One line: the closest known names (or all of them, when few), and how to add one."""
        import difflib

        names = sorted(self._plugins)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        if close:
            known = f"did you mean {' or '.join(map(repr, close))}? ({len(names)} known: advrp2k list {self.kind}s)"
        elif len(names) <= 12:
            known = f"known {self.kind}s are {', '.join(names) or '(none)'}"
        else:
            known = f"{len(names)} are known: advrp2k list {self.kind}s shows them"
        article = "an" if self.kind[0] in "aeiou" else "a"
        own = f"; {article} {self.kind} of your own registers with @register_{self.kind}({name!r}) in a module loaded " \
              f"with 'advrp2k -p MODULE' or an installed plugin package"
        failures = "; note: " + "; ".join(_load_failures.values()) if _load_failures else ""
        return f"unknown {self.kind} {name!r}: {known}{own}{failures}"

    def get(self, name: str) -> Any:
        return self.info(name).obj

    def names(self, pattern: str = "*") -> list[str]:
        load_plugins()
        return sorted(n for n in self._plugins if fnmatch.fnmatch(n, pattern))

    def registered(self) -> list[PluginInfo]:
        """The plugins registered so far, by name, without loading any."""
        return [self._plugins[n] for n in sorted(self._plugins)]

    def unregister(self, name: str) -> None:
        """Remove a plugin (for tests)."""
        self._plugins.pop(name, None)


DATASETS = Registry("dataset")
ARCHS = Registry("arch")
ATTACKS = Registry("attack")
DEFENSES = Registry("defense")
REGISTRIES = {"datasets": DATASETS, "archs": ARCHS, "attacks": ATTACKS, "defenses": DEFENSES}

register_dataset = DATASETS.register
register_arch = ARCHS.register
register_attack = ATTACKS.register
register_defense = DEFENSES.register

_loaded = False
_installed_loaded = False
_load_failures: dict[str, str] = {}


def _distribution_of(module: str) -> tuple[str, str]:
    top = module.split(".")[0]
    if top == "advrp2k":
        return "advrp2k", __version__
    dists = metadata.packages_distributions().get(top, [])
    if not dists:
        return "local (not installed)", "unknown"
    try:
        return dists[0], metadata.version(dists[0])
    except metadata.PackageNotFoundError:
        return dists[0], "unknown"


def load_plugins(extra_modules: tuple[str, ...] = ()) -> dict[str, str]:
    """Import built-in plugins, then entry-point plugins (unless disabled), then ``extra_modules``.

    A plugin that fails to import is recorded (see ``load_failures``) and logged; it never
    stops other plugins from loading.

    Returns:
        the failures so far, mapping entry-point or module name to a one-line message.
    """
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        load_installed_plugins()
    for module in extra_modules:
        load_local_plugin(module)
    return dict(_load_failures)


def load_installed_plugins() -> dict[str, str]:
    """Import the entry-point plugins of installed packages once (unless autoloading is
    disabled), without the built-in ones; returns the failures so far."""
    global _installed_loaded
    if not _installed_loaded:
        _installed_loaded = True
        if os.environ.get(AUTOLOAD_ENV, "").strip() not in ("1", "true", "yes"):
            for ep in _entry_points():
                _load_entry_point(ep)
    return dict(_load_failures)


def plugins_loaded() -> bool:
    """Whether ``load_plugins`` has run (the registries then hold every plugin)."""
    return _loaded


def _entry_points() -> list:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def _load_entry_point(ep) -> None:
    dist = getattr(ep, "dist", None)
    who = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    try:
        ep.load()
    except Exception as exc:  # a broken third-party plugin must not break the tool
        msg = (f"plugin {ep.name!r} from {who} failed to load ({type(exc).__name__}: {exc}); "
               f"fix or uninstall it, or set {AUTOLOAD_ENV}=1 to skip third-party plugins")
        _load_failures[ep.name] = msg
        log.warning(msg)


def load_local_plugin(module: str) -> None:
    """Import an uninstalled plugin module by name (``-p module``); the cwd is importable."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(module)
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(f"plugin module {module!r} given with -p failed to import "
                          f"({type(exc).__name__}: {exc})") from exc


def load_failures() -> dict[str, str]:
    return dict(_load_failures)


def reset_plugin_loading() -> None:
    """Forget that entry points were scanned (for tests that install plugins)."""
    global _loaded, _installed_loaded
    _loaded = _installed_loaded = False
    _load_failures.clear()
