"""advrp2k: an adversarial-robustness benchmark suite for RP2K retail products.

``advrp2k.benchmark(model, classes="dataset")`` evaluates any model of your own (``advrp2k.api``).
The rest of the public API below is what plugins use, built-in and third-party alike: the ``register_*``
decorators, the ``Attack`` and ``TrainingDefense``/``TestTimeDefense`` base classes, declared
``Option``s, the factories and the helpers an attack needs. See ``docs/plugins.md``.

Names are imported on first use (PEP 562), so ``import advrp2k`` and ``advrp2k --help`` do not
load torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from advrp2k._version import __version__

#: public name -> the module that defines it
_PUBLIC = {
    "Eps": "advrp2k.core.eps", "parse_eps": "advrp2k.core.eps", "parse_eps_list": "advrp2k.core.eps",
    "Advrp2kError": "advrp2k.core.errors", "autoattack_module": "advrp2k.core.compat",
    "ATTACKS": "advrp2k.plugins.registry", "ARCHS": "advrp2k.plugins.registry",
    "DATASETS": "advrp2k.plugins.registry", "DEFENSES": "advrp2k.plugins.registry",
    "load_plugins": "advrp2k.plugins.registry", "register_arch": "advrp2k.plugins.registry",
    "register_attack": "advrp2k.plugins.registry", "register_dataset": "advrp2k.plugins.registry",
    "register_defense": "advrp2k.plugins.registry", "Option": "advrp2k.plugins.options",
    "Attack": "advrp2k.plugins.attack", "AttackResult": "advrp2k.plugins.attack",
    "BALL_TOLERANCE": "advrp2k.plugins.attack", "create_attack": "advrp2k.plugins.attack",
    "frozen_eval": "advrp2k.plugins.attack", "project_linf": "advrp2k.plugins.attack",
    "LOSSES": "advrp2k.plugins.losses", "set_margin": "advrp2k.plugins.losses",
    "THREAT_MODELS": "advrp2k.core.threat", "threat_model": "advrp2k.core.threat", "project": "advrp2k.core.threat_sets",
    "steepest_step": "advrp2k.core.threat_sets", "start_from_uniform": "advrp2k.core.threat_sets",
    "check_point": "advrp2k.core.threat_sets", "distances": "advrp2k.core.threat_sets", "patch_side": "advrp2k.core.threat_sets",
    "uniform_streams": "advrp2k.core.random_streams",
    "shelf_candidates": "advrp2k.core.shelf", "shelf_apply": "advrp2k.core.shelf",
    "AdversarialTraining": "advrp2k.plugins.defense", "Defense": "advrp2k.plugins.defense",
    "TestTimeDefense": "advrp2k.plugins.defense", "TrainingDefense": "advrp2k.plugins.defense",
    "create_defense": "advrp2k.plugins.defense",
    "Listed": "advrp2k.plugins.listing", "plugin_source": "advrp2k.plugins.listing",
    "create_model": "advrp2k.models.factory", "list_archs": "advrp2k.models.factory",
    "with_normalization": "advrp2k.models.external",
    "benchmark": "advrp2k.api", "BenchmarkResult": "advrp2k.api", "dataset_classes": "advrp2k.api",
    "load_images": "advrp2k.api",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'advrp2k' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))


if TYPE_CHECKING:  # for type checkers and IDEs; nothing here runs
    from advrp2k.api import BenchmarkResult, benchmark, dataset_classes, load_images
    from advrp2k.core.compat import autoattack_module
    from advrp2k.core.eps import Eps, parse_eps, parse_eps_list
    from advrp2k.core.errors import Advrp2kError
    from advrp2k.models.external import with_normalization
    from advrp2k.models.factory import create_model, list_archs
    from advrp2k.plugins.attack import BALL_TOLERANCE, Attack, AttackResult, create_attack, frozen_eval, project_linf
    from advrp2k.plugins.defense import (AdversarialTraining, Defense, TestTimeDefense, TrainingDefense,
                                         create_defense)
    from advrp2k.core.random_streams import uniform_streams
    from advrp2k.core.shelf import shelf_apply, shelf_candidates
    from advrp2k.core.threat import THREAT_MODELS, threat_model
    from advrp2k.core.threat_sets import check_point, distances, patch_side, project, start_from_uniform, steepest_step
    from advrp2k.plugins.listing import Listed, plugin_source
    from advrp2k.plugins.losses import LOSSES, set_margin
    from advrp2k.plugins.options import Option
    from advrp2k.plugins.registry import (ARCHS, ATTACKS, DATASETS, DEFENSES, load_plugins, register_arch,
                                          register_attack, register_dataset, register_defense)
