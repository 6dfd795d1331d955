"""One attack of an evaluation suite: a registered name and its options (eps is set per run)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ._eps import Eps
from .attack_base import create_attack


@dataclass
class AttackSpec:
    """A registered attack name and its options; ``build(eps)`` makes the attack for one budget."""

    name: str
    options: dict = field(default_factory=dict)

    def build(self, eps: Eps):
        return create_attack(self.name, eps, **self.options)
