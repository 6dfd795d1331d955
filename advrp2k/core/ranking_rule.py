"""The ranking protocol's constants, stated once: which eps, which suite, which minimum budgets.

The board ranks by these (``advrp2k.board.ranking``), ``advrp2k submit`` and ``reproduce`` run
them (``advrp2k.jobs``), and the CLI's defaults come from them.
"""
from __future__ import annotations

from advrp2k.core.eps import Eps, parse_eps

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
