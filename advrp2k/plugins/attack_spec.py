"""One attack of an evaluation suite: a registered name and its options (eps is set per run)."""
from __future__ import annotations

from dataclasses import dataclass, field

from advrp2k.core.eps import Eps
from advrp2k.plugins.attack import create_attack


@dataclass
class AttackSpec:
    """A registered attack name, its options and the threat model it attacks under;
    ``build(eps)`` makes the attack for one budget."""

    name: str
    options: dict = field(default_factory=dict)
    threat: str = "linf"

    def build(self, eps: Eps):
        return create_attack(self.name, eps, threat=self.threat, **self.options)

    def under(self, threat: str) -> "AttackSpec":
        """This attack under another threat model (same options)."""
        return AttackSpec(self.name, dict(self.options), threat)

    def build_for_evaluation(self, eps: Eps):
        """``build(eps)``, refusing an attack whose options an evaluation would not honour.

        Raises:
            UsageError: naming the attack and the option (``Attack.evaluation_problem``).
        """
        from advrp2k.core.errors import UsageError

        attack = self.build(eps)
        problem = attack.evaluation_problem()
        if problem:
            raise UsageError(f"{self.name}: {problem}")
        return attack

    def reseeded(self, offset: int) -> "AttackSpec":
        """This attack with ``offset`` (the run's ``--seed``) added to its own seed, so a run's seed
        reaches every random stream of its suite (and of the attacks that checks call for).

        Offset 0 returns the spec unchanged, so the default run's records stay as they were; an
        attack that declares no ``seed`` option has no random streams to reach.
        """
        from advrp2k.plugins.registry import ATTACKS

        if not offset or "seed" not in (getattr(ATTACKS.get(self.name), "options", None) or {}):
            return self
        return AttackSpec(self.name, {**self.options, "seed": int(self.options.get("seed", 0)) + offset}, self.threat)
