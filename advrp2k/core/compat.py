"""Imports of optional third-party evaluation code, with their packaging traps pinned down.

* ``pyautoattack`` (PyPI) installs the AutoAttack code as module ``pyautoattack``, while
  robustbench 1.1.1 does ``from autoattack import AutoAttack``. We alias the package and its
  submodules under ``autoattack`` when no real ``autoattack`` is installed.
* robustbench 1.1.1 does ``import pkg_resources``, which setuptools >= 81 no longer ships
  (and torch pulls a recent setuptools). It only calls ``resource_filename``; when the real
  module is missing we provide that one function while robustbench imports, then remove the
  shim from ``sys.modules`` so that no other library ever sees it.

Nothing here runs at ``import advrp2k``: a broken robustbench can never break the tool.
"""
from __future__ import annotations

import importlib
import importlib.resources
import logging
import pkgutil
import sys
import types

from advrp2k.core.errors import Advrp2kError

log = logging.getLogger(__name__)


class OptionalDependencyError(Advrp2kError):
    """A third-party evaluation package is missing or broken."""


def autoattack_module() -> types.ModuleType:
    """Return the AutoAttack package, importing it as ``autoattack`` or from ``pyautoattack``."""
    try:
        return importlib.import_module("autoattack")
    except ImportError:
        pass
    try:
        pkg = importlib.import_module("pyautoattack")
    except ImportError as exc:
        raise OptionalDependencyError("AutoAttack is not installed: pip install pyautoattack") from exc
    sys.modules["autoattack"] = pkg
    for sub in pkgutil.iter_modules(pkg.__path__):
        if sub.name.startswith("utils_tf"):
            continue  # TensorFlow helpers: not needed, and importing them needs TensorFlow
        module = importlib.import_module(f"pyautoattack.{sub.name}")
        sys.modules[f"autoattack.{sub.name}"] = module
    log.info("using pyautoattack %s as module 'autoattack'", getattr(pkg, "__version__", "?"))
    return pkg


def _pkg_resources_shim() -> types.ModuleType:
    shim = types.ModuleType("pkg_resources")

    def resource_filename(package: str, resource: str) -> str:
        return str(importlib.resources.files(package).joinpath(resource))

    shim.resource_filename = resource_filename
    shim.__advrp2k_shim__ = True
    return shim


def import_robustbench() -> types.ModuleType:
    """Import robustbench 1.1.1 as shipped on PyPI, working around its two import-time traps."""
    if "robustbench" in sys.modules:
        return sys.modules["robustbench"]
    autoattack_module()
    installed_shim = False
    try:
        importlib.import_module("pkg_resources")
    except ImportError:
        sys.modules["pkg_resources"] = _pkg_resources_shim()
        installed_shim = True
    try:
        return importlib.import_module("robustbench")
    except ImportError as exc:
        raise OptionalDependencyError(f"robustbench failed to import ({exc}); "
                                      f"reinstall it with pip install 'robustbench>=1.1'") from exc
    finally:
        if installed_shim and getattr(sys.modules.get("pkg_resources"), "__advrp2k_shim__", False):
            del sys.modules["pkg_resources"]
