"""When a check fires, run the evaluation that settles it (Tramer et al. 2020, "On adaptive
attacks"), and for randomized models switch to the field's protocol.

Checks stay declarative: a FLAG carries its ``remedy`` (the attacks that would settle it).
This module turns flags into a plan; the evaluator runs it on the examples still counted
robust, and robust accuracy becomes the worst case including it. A protocol detail belongs to
the attack plugin it configures: each plugin says, through ``randomized_options``, what the
randomized protocol means for it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from advrp2k.eval.flags import NONDETERMINISTIC, fired
from advrp2k.plugins.attack_spec import AttackSpec

#: Forward passes per verdict for a randomized model: an example counts as fooled if its final
#: point is misclassified in any of them (and clean-correct only if classified right in all).
VERDICT_PASSES = 10

@dataclass
class VerdictRule:
    """How verdicts are taken: deterministic (one pass) or randomized (several passes, EOT). Recorded
    as the entry's ``evaluation_protocol``; not to be confused with a training protocol
    (``advrp2k.jobs.protocols.Protocol``: arch, epochs, schedule)."""

    randomized: bool = False
    verdict_passes: int = 1
    reason: str = ""
    attacks_changed: list = field(default_factory=list)

    def to_dict(self) -> dict:
        if not self.randomized:
            return {"randomized": False, "verdict_passes": 1}
        return {"randomized": True, "verdict_passes": self.verdict_passes, "reason": self.reason,
                "rule": "fooled if misclassified in any pass; clean-correct only if correct in every pass",
                "attacks": self.attacks_changed}


def protocol_for(flags: list[dict]) -> VerdictRule:
    """The randomized protocol when the determinism check fired, else the deterministic one."""
    nondet = fired(flags, NONDETERMINISTIC)
    if nondet is None:
        return VerdictRule()
    return VerdictRule(True, VERDICT_PASSES, f"the model is not deterministic ({nondet['detail']})")


def randomized_suite(attacks: list[AttackSpec], protocol: VerdictRule) -> list[AttackSpec]:
    """The suite as each plugin configures itself for a randomized model (recorded in ``protocol``)."""
    from advrp2k.plugins.registry import ATTACKS

    out = []
    for spec in attacks:
        options = ATTACKS.get(spec.name).randomized_options(spec.options)
        if options != spec.options:
            protocol.attacks_changed.append({"name": spec.name, "options": options})
        out.append(AttackSpec(spec.name, options, spec.threat))
    return out


def plan_remedies(flags: list[dict], suite: list[AttackSpec],
                  protocol: VerdictRule, threat: str = "linf") -> tuple[list[AttackSpec], list[str]]:
    """The remedy attacks the flags call for (deduplicated, none already in the suite) and why.

    Under a threat model other than l_inf, a remedy that does not serve it is left out and the
    reason says so (``why`` names it), rather than running an attack on the wrong set."""
    from advrp2k.plugins.registry import ATTACKS

    specs, why = [], []
    for flag in flags:
        served = False
        for remedy in flag.get("remedy", []):
            if threat not in getattr(ATTACKS.get(remedy["name"]), "threats", ("linf",)):
                why.append(f"{flag['check']}: remedy {remedy['name']} does not serve {threat}, not run")
                continue
            served = True
            spec = AttackSpec(remedy["name"], dict(remedy["options"]), threat)
            if protocol.randomized:
                spec = randomized_suite([spec], VerdictRule(True))[0]
            if spec not in suite and spec not in specs:
                specs.append(spec)
        if served:
            why.append(flag["check"])
    return specs, list(dict.fromkeys(why))
