"""advrp2k: an adversarial-robustness benchmark suite for RP2K retail products.

The public API below is what plugins use: the ``register_*`` decorators, the ``Attack`` and
``TrainingDefense``/``TestTimeDefense`` base classes, and the factories. See the README,
"Write and submit a defense".
"""
from ._eps import Eps, parse_eps, parse_eps_list
from ._registry import (ATTACKS, ARCHS, DATASETS, DEFENSES, load_plugins, register_arch, register_attack,
                        register_dataset, register_defense)
from ._version import __version__
from .attack_base import Attack, AttackResult, create_attack, frozen_eval, project_linf
from .defense_base import AdversarialTraining, Defense, TestTimeDefense, TrainingDefense, create_defense
from .errors import Advrp2kError
from .models import create_model, list_archs
from .options import Option

__all__ = ["Eps", "parse_eps", "parse_eps_list", "ATTACKS", "ARCHS", "DATASETS", "DEFENSES", "load_plugins",
           "register_arch", "register_attack", "register_dataset", "register_defense", "__version__", "Attack",
           "AttackResult", "create_attack", "frozen_eval", "project_linf", "AdversarialTraining", "Defense",
           "TestTimeDefense", "TrainingDefense", "create_defense", "Advrp2kError", "create_model", "list_archs", "Option"]
