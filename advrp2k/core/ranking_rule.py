"""The ranking protocol's constants, stated once: which eps, which suite, which minimum budgets.

The board ranks by these (``advrp2k.board.ranking``), ``advrp2k submit`` and ``reproduce`` run
them (``advrp2k.jobs``), and the CLI's defaults come from them.
"""
from __future__ import annotations

from advrp2k.core.eps import Eps, parse_eps
from advrp2k.core.threat import ThreatModel, threat_model

#: The two l_inf budgets of the paper's Table 5, the default of every evaluation.
RANKING_EPS: tuple[Eps, ...] = (parse_eps("4/255"), parse_eps("8/255"))
RANKING_EPS_LABELS: tuple[str, ...] = tuple(e.label for e in RANKING_EPS)
#: Boards are ordered by robust accuracy at this budget, then by clean accuracy.
RANK_EPS: str = RANKING_EPS_LABELS[-1]
#: The fixed suite every ranked entry was evaluated with: (attack plugin, options).
RANKING_SUITE: tuple[tuple[str, dict], ...] = (("pgd", {"steps": 20, "restarts": 1}), ("autoattack", {}))
#: The least a recorded attack must have spent to count toward the ranking.
MIN_PGD_STEPS = 20
MIN_APGD_STEPS = 100
MIN_SQUARE_QUERIES = 5000
RANKING_RULE = (f"ranked by the worst case per example over PGD-{MIN_PGD_STEPS} and AutoAttack (standard) at "
                f"{' and '.join(RANKING_EPS_LABELS)}, on the board's whole test set; entries evaluated without "
                "that suite, or on part of the test set, are shown apart, not ranked")


def ranking_suite_of(threat: str) -> tuple[tuple[str, dict], ...]:
    """The ranking suite of a threat model: l_inf's is ``RANKING_SUITE``."""
    return RANKING_SUITE if threat == "linf" else threat_model(threat).ranking_suite


def ranking_labels(threat: str, image_size: int | None = None) -> tuple[str, ...]:
    """The budget labels a ranked entry of ``threat`` covers (l_inf: ``RANKING_EPS_LABELS``; l2's
    depend on the image size); boards rank by the last."""
    if threat == "linf":
        return RANKING_EPS_LABELS
    return tuple(e.label for e in threat_model(threat).ranking_budgets(image_size))


def rank_label(entry: dict) -> str:
    """The budget an entry's board ranks it at."""
    threat = entry.get("threat_model", "linf")
    if threat == "linf":
        return RANK_EPS
    return ranking_labels(threat, (entry.get("data") or {}).get("image_size"))[-1]


def ranking_rule(threat: ThreatModel | str = "linf") -> str:
    """The ranking rule of a threat model's boards, in words."""
    name = threat if isinstance(threat, str) else threat.name
    if name == "linf":
        return RANKING_RULE
    suite = " and ".join(_suite_name(a) for a, _ in ranking_suite_of(name))
    model = threat_model(name)
    budgets = " and ".join(model.ranked_budgets or model.budgets)
    also = f" ({' and '.join(model.large_image_budgets)} at 224 px and above)" if model.large_image_budgets else ""
    return (f"ranked by the worst case per example over {suite} at {budgets}{also}, on the board's whole test "
            "set; entries evaluated without that suite, or on part of the test set, are shown apart, not ranked")


def _suite_name(attack: str) -> str:
    return {"pgd": f"PGD-{MIN_PGD_STEPS}", "autoattack": "AutoAttack (standard)"}.get(attack, attack)
