"""The defense contract.

A training-time defense (``TrainingDefense``) supplies the loss that the shared trainer
minimises on each batch; the trainer owns the optimiser, schedule, checkpoints and resume,
so every defense gets them for free and trains under the same settings. A test-time defense
(``TestTimeDefense``) wraps an already trained model. Both see images in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from advrp2k.core.eps import Eps
from advrp2k.plugins.options import resolve_options, take_options


class Defense:
    """Common base. ``paper_id`` names the method in model ids (``Madry2018Towards``).

    Options are declared once, in the class attribute ``options``
    (``advrp2k.plugins.options``); the base resolves them, sets each as an attribute and
    records them in ``config()``, which keys the trained-model cache. A subclass that needs
    more than its options (an attack to train with) builds it in ``__init__`` after
    ``super().__init__(eps, **options)``.
    """

    paper_id = "Custom"
    #: What the site shows for entries of this defense when the submitter gave no name: a readable
    #: title, and the paper's https link and venue (optional).
    title: str | None = None
    link: str | None = None
    venue: str | None = None
    needs_eps = True
    #: False: the defense only labels models trained elsewhere (``external``); advrp2k refuses to
    #: train it and evaluates the model the user gives.
    trains = True
    options: dict = {}  # name -> Option; a plugin declares its own

    def __init__(self, eps: Eps | None = None, **options):
        self.eps = eps
        take_options(self, options, eps)

    def config(self) -> dict:
        """What trained this defense: the budget and every declared option's resolved value (the
        training cache key hashes it, so two option values never share a model)."""
        return {"eps": self.eps.value if self.eps else None, "eps_label": self.eps.label if self.eps else None,
                **self.option_values}

    @classmethod
    def protocol_options(cls, protocol) -> dict:
        """Options this defense takes from the training protocol (``advrp2k.jobs.protocols``); values
        given with ``--defense-arg`` override them. None by default."""
        return {}


class TrainingDefense(Defense):
    """Trains a model: implement ``training_loss``."""

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      generator: torch.Generator) -> torch.Tensor:
        """Mean loss on a batch; ``model`` is in train mode; ``generator`` drives all randomness."""
        raise NotImplementedError


class AdversarialTraining(TrainingDefense):
    """Minimise cross-entropy at the point ``self.attack`` finds for each training example.

    Subclasses set ``self.attack`` (built with ``create_attack``, the same plugins evaluation uses).
    """

    attack = None

    def config(self) -> dict:
        """The options and the training attack's own record (its implementation's settings)."""
        return {**super().config(), "attack": self.attack.config()}

    def training_loss(self, model, x, y, generator):
        x_adv = self.attack(model, x, y, generator=generator).x_adv
        return F.cross_entropy(model(x_adv), y)


class TestTimeDefense(Defense):
    """Wraps a model trained by ``base_defense`` (default ``standard``): implement ``wrap``."""

    base_defense = "standard"

    def wrap(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError


def create_defense(name: str, eps: Eps | None = None, **options) -> Defense:
    from advrp2k.plugins.registry import DEFENSES
    from advrp2k.plugins.options import validate_options

    cls = DEFENSES.get(name)
    given = validate_options(f"defense {name!r}", cls, options)
    defense = cls(eps=eps, **given)
    # A plugin whose __init__ names its options (no ``options`` declaration) sets its own
    # attributes; what it was given is recorded all the same.
    defense.option_values = resolve_options(cls, given, eps)
    return defense
