"""Analyses only per-example results on RP2K give: intervals, robustness curves, the long tail,
mistake severity and paired comparisons.

Pure functions over an entry (a dict) or a per-example table (``advrp2k.analysis.results``): nothing
here runs a model. The pipeline stores their output in the entry; the CLI and the site only
render it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from advrp2k.core.eps import by_eps, label_value
from advrp2k.core.packs import smaller_pack
from advrp2k.core.ranking_rule import RANK_EPS
from advrp2k.analysis.results import ROBUST, eps_labels, per_sku
from advrp2k.analysis.stats import (bootstrap_rank_intervals, eps_at_fraction, holm, mcnemar_exact, monotone_envelope,
                                    normalised_auc, paired_bootstrap_diff, spearman, wilson_of)

#: Training-count bins of the long-tail view (inclusive bounds), recorded in every entry.
TAIL_BINS = (("head (>= 100 train images)", 100, None), ("body (21-99)", 21, 99), ("tail (<= 20)", 0, 20))
#: Mistake severity, from mild to severe: where the adversarial class leaves the true one.
SEVERITY_LEVELS = ("sibling in the product line", "same brand", "same product type", "another product type")
FLIP_ATTRIBUTES = ("size", "flavour", "brand", "product_type", "shape")
N_ATTRACTORS = 20
FIG7_GROUP = 10  # SKUs per group in the paper's Fig. 7 view


def intervals(entry: dict) -> dict:
    """95 % Wilson intervals mirroring the entry's accuracies (clean, top-5, robust per eps,
    per attack, AutoAttack), each computed from the accuracy and its number of examples."""
    n = entry["n_examples"]
    out = {"clean_acc": wilson_of(entry["clean_acc"], n),
           "robust_acc": {k: wilson_of(v, n) for k, v in entry["robust_acc"].items()}}
    if "top5_acc" in entry:
        out["top5_acc"] = wilson_of(entry["top5_acc"], n)
    if entry.get("per_attack"):
        out["per_attack"] = {a: {k: wilson_of(v, n) for k, v in accs.items()} for a, accs in entry["per_attack"].items()}
    return out


def group_intervals(per_group: dict) -> dict:
    """``per_group`` with a ``ci95`` object beside each group's accuracies."""
    out = {}
    for key, groups in per_group.items():
        out[key] = {g: {**v, "ci95": {"clean_acc": wilson_of(v["clean_acc"], v["n"]),
                                      "robust_acc": {k: wilson_of(r, v["n"]) for k, r in v["robust_acc"].items()}}}
                    for g, v in groups.items()}
    return out


def curve(entry: dict) -> dict:
    """Accuracy versus eps from eps 0 (clean) over the evaluated grid, with its 95 % band.

    Returns:
        ``eps`` (floats, 0 first), ``labels``, ``acc``, ``envelope`` (running minimum),
        ``ci95`` (one [low, high] per point), ``half_clean_eps`` (the eps where the envelope
        falls to half of clean accuracy, linearly interpolated; None if it never does) and
        ``auc`` (area under the envelope over [0, max eps] divided by max eps: the mean accuracy
        over the budget range).
    """
    labels = by_eps(entry["robust_acc"])
    eps = [0.0] + [label_value(lab) for lab in labels]
    acc = [entry["clean_acc"]] + [entry["robust_acc"][lab] for lab in labels]
    env = monotone_envelope(acc)
    return {"eps": eps, "labels": ["0"] + labels, "acc": acc, "envelope": env,
            "ci95": [wilson_of(a, entry["n_examples"]) for a in acc],
            "half_clean_eps": eps_at_fraction(eps, env, 0.5), "auc": normalised_auc(eps, env)}


def analysis_eps(df: pd.DataFrame) -> str:
    """The eps the per-SKU analyses use: 8/255 when evaluated (the paper's headline), else the largest."""
    labels = eps_labels(df)
    return RANK_EPS if RANK_EPS in labels else labels[-1]


def long_tail(df: pd.DataFrame, eps: str) -> dict:
    """Robust accuracy across the long tail of SKU training counts, at ``eps``."""
    sku = per_sku(df)
    robust = sku[f"robust_acc@{eps}"]
    bins = []
    for name, low, high in TAIL_BINS:
        in_bin = (df["train_count"] >= low) & (True if high is None else df["train_count"] <= high)
        part = df[in_bin]
        bins.append({"bin": name, "min_train": low, "max_train": high, "n_skus": int(part["sku"].nunique()),
                     "n": int(len(part)), "clean_acc": _mean(part["clean_correct"]),
                     "robust_acc": _mean(part[ROBUST + eps]),
                     "ci95": wilson_of(_mean(part[ROBUST + eps]) or 0.0, len(part))})
    k = max(1, int(np.ceil(0.1 * len(sku))))
    worst = sku.sort_values([f"robust_acc@{eps}", "n", "sku"], ascending=[True, False, True]).iloc[0]
    return {"eps": eps, "bins": bins, "balanced_robust_acc": float(robust.mean()),
            "balanced_clean_acc": float(sku["clean_acc"].mean()),
            "worst_sku": {"sku": worst["sku"], "n": int(worst["n"]), "robust_acc": float(worst[f"robust_acc@{eps}"])},
            "bottom10_mean": float(robust.nsmallest(k).mean()), "bottom10_n_skus": k,
            "spearman_train_count_vs_robust": spearman(sku["train_count"], robust),
            "fig7": _fig7(sku, eps)}


def _mean(series) -> float | None:
    return float(series.mean()) if len(series) else None


def _fig7(sku: pd.DataFrame, eps: str) -> list[dict]:
    """The paper's Fig. 7 view under attack: SKUs sorted by training count, groups of 10
    neighbours, mean per-SKU clean and robust top-1 per group."""
    ordered = sku.sort_values(["train_count", "sku"]).reset_index(drop=True)
    out = []
    for start in range(0, len(ordered), FIG7_GROUP):
        g = ordered.iloc[start:start + FIG7_GROUP]
        out.append({"first": int(start), "median_train": float(g["train_count"].median()),
                    "clean_acc": float(g["clean_acc"].mean()), "robust_acc": float(g[f"robust_acc@{eps}"].mean())})
    return out


def severity(df: pd.DataFrame, eps: str, attributes: dict[str, dict[str, str]]) -> dict:
    """How far each fooling point's class lies from the true SKU, at ``eps``.

    Levels (1 mildest to 4): a sibling in the same product line (the ``product_line``
    attribute, or else the same brand, product type and shape), the same brand, the same
    product type, another product type. Levels whose attributes are missing are skipped and
    said so; with no attributes at all only the attractor SKUs are reported.
    """
    fooled = df[df["clean_correct"] & ~df[ROBUST + eps] & (df["adv_class"] >= 0)]
    pairs = list(zip(fooled["sku"], fooled["adv_sku"]))
    out = {"eps": eps, "n_fooled": len(pairs), "levels": list(SEVERITY_LEVELS), "skipped": [],
           "attractors": _attractors(fooled)}
    keys = {k for a in attributes.values() for k in a if a.get(k)}
    if not keys:
        out["skipped"].append("severity levels and attribute flips: no attribute table (attributes.csv or --attributes)")
        return out
    if not {"brand", "product_type"} <= keys:
        out["skipped"].append(f"severity levels: need brand and product_type attributes (have {sorted(keys)})")
    else:
        levels = [_level(attributes.get(t, {}), attributes.get(a, {})) for t, a in pairs]
        hist = [sum(1 for lv in levels if lv == i + 1) for i in range(len(SEVERITY_LEVELS))]
        out["histogram"] = hist
        out["mean_level"] = float(np.mean(levels)) if levels else None
    out["flips"] = {key: (sum(attributes.get(t, {}).get(key) != attributes.get(a, {}).get(key) for t, a in pairs)
                          / len(pairs) if pairs else None) for key in FLIP_ATTRIBUTES if key in keys}
    missing = [k for k in FLIP_ATTRIBUTES if k not in keys]
    if missing:
        out["skipped"].append(f"attribute flips for {', '.join(missing)}: not in the attribute table")
    return out


def _level(true: dict, adv: dict) -> int:
    def same(*keys):
        return all(true.get(k) and true.get(k) == adv.get(k) for k in keys)

    sibling = same("product_line") if true.get("product_line") else same("brand", "product_type", "shape")
    if sibling:
        return 1
    if same("brand"):
        return 2
    return 3 if same("product_type") else 4


def _attractors(fooled: pd.DataFrame) -> list[dict]:
    counts = fooled["adv_sku"].value_counts()
    total = int(counts.sum())
    return [{"sku": s, "n": int(c), "share": c / total} for s, c in counts.head(N_ATTRACTORS).items()]


def compare(a: pd.DataFrame, b: pd.DataFrame, seed: int = 0, n_boot: int = 2000) -> list[dict]:
    """Paired comparison of two per-example tables of the same test set, per common eps.

    Per eps: examples robust in A only and in B only, the exact McNemar p-value, and the
    accuracy difference A - B with its paired-bootstrap 95 % interval.
    """
    if len(a) != len(b) or not (a["label"].to_numpy() == b["label"].to_numpy()).all():
        raise ValueError("the two evaluations are not of the same test examples")
    out = []
    for eps in ["clean"] + [e for e in eps_labels(a) if e in eps_labels(b)]:
        col = "clean_correct" if eps == "clean" else ROBUST + eps
        ra, rb = a[col].to_numpy(), b[col].to_numpy()
        only_a, only_b = int((ra & ~rb).sum()), int((~ra & rb).sum())
        diff, lo, hi = paired_bootstrap_diff(ra, rb, n_boot=n_boot, seed=seed)
        out.append({"eps": eps, "acc_a": float(ra.mean()), "acc_b": float(rb.mean()), "a_only": only_a,
                    "b_only": only_b, "p_mcnemar": mcnemar_exact(only_a, only_b), "diff": diff, "diff_ci95": [lo, hi]})
    return out


def ranking_statistics(outcomes: np.ndarray, seed: int = 0) -> dict:
    """For entries already in ranked order on one test set (rows of per-example outcomes):
    Holm-corrected exact McNemar tests between neighbours and bootstrap rank intervals."""
    pvals = []
    for upper, lower in zip(outcomes, outcomes[1:]):
        pvals.append(mcnemar_exact(int((upper & ~lower).sum()), int((~upper & lower).sum())))
    adjusted = holm(pvals) if pvals else []
    return {"neighbour_p": pvals, "neighbour_p_holm": adjusted,
            "rank_ci95": bootstrap_rank_intervals(outcomes, seed=seed)}


def entry_analyses(entry: dict, df: pd.DataFrame, attributes: dict[str, dict[str, str]]) -> dict:
    """The analysis fields of an entry: intervals, the curve, and the per-SKU analyses (and
    under ticket switching, its own summary)."""
    eps = analysis_eps(df)
    out = {"ci95": intervals(entry), "curve": curve(entry), "per_group": group_intervals(entry.get("per_group", {})),
           "analysis": {"eps": eps, "long_tail": long_tail(df, eps), "severity": severity(df, eps, attributes)}}
    if entry.get("threat_model") == "switch":
        out["switch"] = switch_summary(entry, df, attributes)
    return out


def switch_summary(entry: dict, df: pd.DataFrame, attributes: dict[str, dict[str, str]]) -> dict:
    """Ticket switching over the budget grid: per budget the targeted success rate (switched
    among clean-correct images, with its interval); per image the smallest budget of the grid
    that reached a sibling, summarised by its median and the curve of the share switched; and
    among switched images, those sent to a smaller pack of the same line (a proxy for a cheaper
    item: the ``size`` attribute, where it is readable)."""
    labels = by_eps(entry["robust_acc"])
    correct = df[df["clean_correct"]]
    n = len(correct)
    rate = {lab: float((~correct[ROBUST + lab]).mean()) if n else 0.0 for lab in labels}
    smallest = sorted(label_value(lab) for lab in correct["fooled_at"].dropna()) + [float("inf")] * int(
        correct["fooled_at"].isna().sum())
    median = smallest[(len(smallest) - 1) // 2] if smallest else float("inf")
    switched = correct[correct["fooled_at"].notna()]
    smaller = 0
    for sku, adv in zip(switched["sku"], switched["adv_sku"]):
        smaller += smaller_pack(attributes.get(sku, {}).get("size", ""), attributes.get(adv, {}).get("size", ""))
    return {"clean_correct": n, "success_rate": rate,
            "success_ci95": {lab: list(wilson_of(rate[lab], n)) for lab in labels},
            "smallest_budget_median": None if median == float("inf") else next(
                lab for lab in labels if label_value(lab) == median),
            "curve": {"labels": labels, "switched": [rate[lab] for lab in labels]},
            "switched": int(len(switched)), "to_smaller_pack": smaller,
            "smaller_pack_note": "a switch to a sibling of a smaller pack (size attribute): a proxy for a cheaper item"}
