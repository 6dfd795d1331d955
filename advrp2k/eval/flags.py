"""The FLAG-level checks as data: each kind has an identifier, the title shown to users, and the
attacks that settle it (its remedy). Code matches flags by identifier, never by display text.

A flag record, as stored in an entry: ``{"id", "check" (the title), "detail", "remedy"?}``.
"""
from __future__ import annotations

from dataclasses import dataclass

#: The attacks a kind of flag calls for (run by escalation on the examples still robust).
SCALE_INVARIANT = ({"name": "pgd_cw", "options": {}}, {"name": "apgd_t", "options": {}},
                   {"name": "square", "options": {"queries": 5000}})
MORE_QUERIES = ({"name": "square", "options": {"queries": 5000}},)
MORE_STEPS = ({"name": "pgd", "options": {"steps": 100, "restarts": 5, "seed": 1}},)


@dataclass(frozen=True)
class FlagKind:
    id: str
    title: str
    remedy: tuple = ()

    def flag(self, detail: str) -> dict:
        """The record of this flag firing, with what made it fire."""
        record = {"id": self.id, "check": self.title, "detail": detail}
        if self.remedy:
            record["remedy"] = [{"name": r["name"], "options": dict(r["options"])} for r in self.remedy]
        return record


NONDETERMINISTIC = FlagKind("nondeterministic", "determinism")
BATCH_DEPENDENT = FlagKind("batch_dependent", "batch-size invariance")
PROBABILITIES = FlagKind("probabilities", "logits, not probabilities", SCALE_INVARIANT)
GRADIENTS = FlagKind("unusable_gradients", "usable gradients", SCALE_INVARIANT)
NO_COLLAPSE = FlagKind("no_large_eps_collapse", "large-eps collapse", MORE_QUERIES)
RANDOM_SEARCH_WINS = FlagKind("random_search_wins", "white-box beats random search", MORE_QUERIES)
NOT_CONVERGED = FlagKind("not_converged", "convergence", MORE_STEPS)
LOW_PRECISION = FlagKind("low_precision_verdicts", "low-precision verdicts")

KINDS = {k.id: k for k in (NONDETERMINISTIC, BATCH_DEPENDENT, PROBABILITIES, GRADIENTS, NO_COLLAPSE,
                           RANDOM_SEARCH_WINS, NOT_CONVERGED, LOW_PRECISION)}


def fired(flags: list[dict], kind: FlagKind) -> dict | None:
    """The first flag of ``kind`` among ``flags`` (None if it did not fire)."""
    return next((f for f in flags if f.get("id") == kind.id), None)
