"""Threat models as a shared contract: what an adversary may change (the perturbation set and its
budget) and what counts as a success (any wrong class, or a sibling SKU).

Attacks declare the threat models they serve (``Attack.threats``); the engine checks every point
an attack returns against its threat model's set (``advrp2k.core.threat_sets.check_point``) and takes every verdict with
its goal. Entries, per-example results, boards and the site are keyed by ``name``. Both sides
import this module; neither owns it. It needs no torch (the site and the analyses read it); the
sets' tensor operations live in ``advrp2k.core.threat_sets``.

A budget is an ``advrp2k.core.eps.Eps`` (a value and the label results are keyed by), whatever the
threat model: an l_inf or l2 radius in [0, 1] pixel units, a patch's share of the image area
(``"2%"``), or a shelf severity (``"3"``).
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from fractions import Fraction

from advrp2k.core.eps import Eps, parse_eps
from advrp2k.core.errors import UsageError

@dataclass(frozen=True)
class ThreatModel:
    """One threat model.

    Attributes:
        name: the key of entries and boards (``linf``, ``l2``, ``patch``, ``shelf``, ``switch``).
        geometry: the perturbation set: ``linf`` or ``l2`` ball, ``patch`` (one square region of at
            most the budget's share of the area; nothing outside it changes), ``shelf`` (named
            transforms, each re-generated and compared by the engine).
        goal: ``untargeted`` (any wrong class) or ``sibling`` (a class of the true SKU's product line).
        budgets: the default budgets, ascending (``"small"``/``"large"`` images for l2: see ``default_budgets``).
        ranking_suite: (attack plugin, options) the ranked entries of this threat model ran.
        checks: per integrity check, "applies" or why it does not (recorded in every entry).
    """

    name: str
    title: str
    geometry: str
    budget_meaning: str
    budgets: tuple[str, ...]
    ranking_suite: tuple[tuple[str, dict], ...]
    references: tuple[str, ...]
    goal: str = "untargeted"
    large_image_budgets: tuple[str, ...] = ()  # l2 at 224 px and above (RobustBench's ImageNet eps 3.0)
    checks: dict = field(default_factory=dict)
    ranked_budgets: tuple[str, ...] = ()  # the budgets a ranked entry covers (empty: the default budgets)
    default_attacks: tuple[str, ...] = ("pgd",)  # the suite when none is named (pgd: the protocol's steps)

    def parse_budget(self, text) -> Eps:
        """The user's budget (``8/255``, ``0.5``, ``2%``, ``3``) as an ``Eps`` labelled the way results key it.

        Raises:
            UsageError: not a number, or out of this threat model's range.
        """
        return _PARSERS[self.geometry](str(text).strip(), self)

    def parse_budgets(self, text: str) -> list[Eps]:
        items = [self.parse_budget(t) for t in str(text).split(",") if t.strip()]
        if not items:
            raise UsageError(f"no budget given for threat model {self.name}: e.g. {','.join(self.budgets)}")
        return sorted(set(items))

    def default_budgets(self, image_size: int | None = None) -> list[Eps]:
        """The default budgets; l2's grow with the image (0.25, 0.5 below 224 px; 1.5, 3.0 at 224 and up)."""
        texts = self.large_image_budgets if (self.large_image_budgets and (image_size or 0) >= 224) else self.budgets
        return [self.parse_budget(t) for t in texts]

    def ranking_budgets(self, image_size: int | None = None) -> list[Eps]:
        """The budgets a ranked entry must cover; boards rank by the last (the largest)."""
        if self.ranked_budgets:
            return [self.parse_budget(t) for t in self.ranked_budgets]
        return self.default_budgets(image_size)

    def heading(self, label: str) -> str:
        """A budget label as tables head it (``eps 8/255``, ``l2 0.5``, ``2% of the area``, ``severity 3``)."""
        return {"linf": f"eps {label}", "l2": f"l2 {label}", "patch": f"patch {label}",
                "shelf": f"severity {label}"}[self.geometry]

    def value_text(self, value: float) -> str:
        """A budget that is no label (an interpolated one), in this threat model's unit."""
        label = {"linf": f"{value * 255:.2f}/255", "l2": f"{value:.3g}", "patch": f"{value:.2%}",
                 "shelf": f"{value:.2f}"}[self.geometry]
        return self.heading(label)

    def describe(self) -> dict:
        """What an entry records of its threat model."""
        return {"name": self.name, "title": self.title, "geometry": self.geometry, "goal": self.goal,
                "budget": self.budget_meaning, "references": list(self.references), "checks": dict(self.checks)}


def _linf_budget(text: str, threat: ThreatModel) -> Eps:
    return parse_eps(text)


def _l2_budget(text: str, threat: ThreatModel) -> Eps:
    value = _number(text, threat)
    if not 0 < value <= 1000:
        raise UsageError(f"l2 budget {text!r} is out of range: give the radius in [0, 1] pixel units, e.g. 0.5 "
                         f"(or 3.0 at 224 px, RobustBench's ImageNet convention)")
    return Eps(value, f"{value:g}")


def _patch_budget(text: str, threat: ThreatModel) -> Eps:
    percent = text.endswith("%")
    value = _number(text.rstrip("%").strip(), threat) / (100 if percent else 1)
    if not 0 < value <= 0.5:
        raise UsageError(f"patch budget {text!r} is out of range: give the patch's share of the image area, "
                         f"e.g. 2% or 0.02 (at most 50%)")
    return Eps(value, f"{value * 100:g}%")


def _severity_budget(text: str, threat: ThreatModel) -> Eps:
    value = _number(text, threat)
    if value not in (1, 2, 3, 4, 5):
        raise UsageError(f"shelf severity {text!r} is not one of 1, 2, 3, 4, 5")
    return Eps(float(value), str(int(value)))


def _number(text: str, threat: ThreatModel) -> float:
    try:
        value = float(Fraction(text.replace(" ", ""))) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"{threat.name} budget {text!r} is not a number: e.g. {','.join(threat.budgets)}")
    if not math.isfinite(value):
        raise UsageError(f"{threat.name} budget {text!r} is not finite")
    return value


_PARSERS = {"linf": _linf_budget, "l2": _l2_budget, "patch": _patch_budget, "shelf": _severity_budget}

_BALL = "applies: every returned point is checked in float64"
_NOT_BALL = "does not apply"
THREAT_MODELS: dict[str, ThreatModel] = {t.name: t for t in (
    ThreatModel("linf", "l_inf perturbation", "linf", "l_inf radius in [0, 1] pixel units", ("4/255", "8/255"),
                (("pgd", {"steps": 20, "restarts": 1}), ("autoattack", {})),
                ("Madry et al. 2018, arXiv:1706.06083", "Croce and Hein 2020, arXiv:2003.01690"),
                checks={"ball and box": _BALL, "re-verification": "applies", "determinism": "applies",
                        "escalation": "applies", "convergence": "applies"}),
    ThreatModel("l2", "l2 perturbation", "l2", "l2 radius in [0, 1] pixel units over the whole image",
                ("0.25", "0.5"), (("pgd", {"steps": 20, "restarts": 1}), ("autoattack", {})),
                ("Madry et al. 2018, arXiv:1706.06083", "Croce and Hein 2020, arXiv:2003.01690",
                 "RobustBench ImageNet l2 convention: eps 3.0 at 224 px (Croce et al. 2021, arXiv:2010.09670)"),
                large_image_budgets=("1.5", "3"),
                checks={"ball and box": _BALL, "re-verification": "applies", "determinism": "applies",
                        "escalation": "applies: remedies that serve l2 only", "convergence": "applies"}),
    ThreatModel("switch", "ticket switching: a sibling SKU within the l_inf ball", "linf",
                "l_inf radius in [0, 1] pixel units; success only on a sibling SKU",
                ("1/255", "2/255", "4/255", "8/255", "16/255"), (("pgd", {"steps": 20, "restarts": 1}),),
                ("Madry et al. 2018, arXiv:1706.06083 (targeted at a set of classes)",),
                goal="sibling", ranked_budgets=("4/255", "8/255"),
                checks={"ball and box": _BALL, "re-verification": "applies: the returned point's class must be a sibling",
                        "determinism": "applies", "escalation": "applies: remedies that serve switch only",
                        "convergence": "applies"}),
    ThreatModel("patch", "label-sized stickers: one square patch, anywhere, any content", "patch",
                "the patch's share of the image area (a square; nothing outside it changes)", ("1%", "2%", "5%"),
                (("patch_pgd", {}), ("patch_rs", {})),
                ("Brown et al. 2017, arXiv:1712.09665 (adversarial patch)",
                 "Croce et al. 2022, arXiv:2006.12834 (Sparse-RS: gradient-free patches)",
                 "Athalye et al. 2018, arXiv:1707.07397 (expectation over transformation)"),
                default_attacks=("patch_pgd", "patch_rs"),
                checks={"ball and box": "applies: the bounding box of the changed pixels must fit the patch's area "
                                        "(float64), every pixel in [0, 1]",
                        "re-verification": "applies", "determinism": "applies",
                        "escalation": "does not apply: no remedy attack serves patches",
                        "convergence": "does not apply: the suite pairs a gradient and a gradient-free search instead"}),
    ThreatModel("shelf", "shelf conditions: the worst of natural corruptions and a photometric/geometric grid",
                "shelf", "severity 1 to 5 of every corruption and grid step (advrp2k.core.shelf)",
                ("1", "2", "3", "4", "5"), (("shelf_grid", {}),),
                ("Hendrycks and Dietterich 2019, arXiv:1903.12261 (corruption protocol)",
                 "Engstrom et al. 2019, arXiv:1712.02779 (worst of a transformation grid)"),
                ranked_budgets=("1", "2", "3"), default_attacks=("shelf_grid",),
                checks={"ball and box": "box applies; no norm ball: every returned point is re-generated from the "
                                        "transform the attack names and must match it exactly",
                        "re-verification": "applies", "determinism": "applies: transforms are seeded per example",
                        "escalation": "does not apply: no remedy attack serves shelf conditions",
                        "convergence": "does not apply: the grid is searched exhaustively, there are no steps"}),
)}


def threat_model(name: str) -> ThreatModel:
    """The threat model called ``name``.

    Raises:
        UsageError: an unknown name, with the closest known one.
    """
    if name not in THREAT_MODELS:
        close = difflib.get_close_matches(str(name), list(THREAT_MODELS), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(f"unknown threat model {name!r}{hint}: use one of {', '.join(THREAT_MODELS)}")
    return THREAT_MODELS[name]


def parse_threats(text: str) -> list[ThreatModel]:
    """``linf,l2`` -> the threat models, in the given order, each once."""
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    if not names:
        raise UsageError(f"no threat model given: use one or more of {', '.join(THREAT_MODELS)}")
    return [threat_model(n) for n in dict.fromkeys(names)]
