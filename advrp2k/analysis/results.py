"""Per-example results as a pandas DataFrame: one row per test example.

The evaluator saves, beside each entry, which examples each attack fooled at each eps and the
class each fooling point went to (``<leaderboard>/examples/<dataset>/<threat>/<model_id>.json``),
plus the context the analyses need (labels, class names, training counts, attributes).
Everything else (intervals, curves, the long tail, mistake severity, paired comparisons) is
computed from this table, never by re-running attacks.

Columns of ``examples(entry_path)``:
    index, label, sku, train_count, one column per attribute (product_type, shape, brand, ...),
    clean_correct, ``robust@<eps>`` for each evaluated eps (bool), fooled_by (attack name or
    None), fooled_at (eps label or None), adv_class (int, -1 when not fooled), adv_sku,
    largest_robust_eps (float; 0.0 when fooled at the smallest eps, NaN when misclassified clean);
    for a targeted attack that reports its aim (MALT), ``<attack> targets@<eps>``: per example the
    classes it aimed at, nearest first (None where it did not attack).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from advrp2k.core.eps import by_eps, label_value
from advrp2k.core.errors import UsageError

ROBUST = "robust@"  # column prefix


def examples_path(entry_path: str | Path) -> Path:
    """``<lb>/entries/<dataset>/<threat>/<id>.json`` -> ``<lb>/examples/<dataset>/<threat>/<id>.json``."""
    p = Path(entry_path)
    return p.parents[3] / "examples" / p.parent.parent.name / p.parent.name / p.name


def examples(entry_path: str | Path) -> pd.DataFrame:
    """The per-example table of the entry at ``entry_path`` (see the module docstring).

    Raises:
        UsageError: the entry's per-example file is missing, unfinished, or predates the
            per-example context (re-run ``advrp2k eval`` to regenerate it).
    """
    path = examples_path(entry_path)
    if not path.is_file():
        raise UsageError(f"no per-example results for {entry_path} (expected {path}): re-run 'advrp2k eval' for it")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise UsageError(f"per-example results {path} are unreadable ({exc}): re-run 'advrp2k eval' for it")
    return frame(data, str(path))


def frame(data: dict, where: str = "per-example results") -> pd.DataFrame:
    """The per-example table from a per-example results object (as saved by the evaluator)."""
    ctx = data.get("context") or {}
    if not data.get("complete") or not ctx.get("labels"):
        raise UsageError(f"{where} are unfinished or were written before per-example analyses existed: "
                         f"re-run 'advrp2k eval' (with --restart) for this model")
    labels = np.asarray(ctx["labels"], dtype=np.int64)
    classes, counts, attrs = ctx.get("classes", []), ctx.get("train_counts", []), ctx.get("attributes", {})
    n = len(labels)
    df = pd.DataFrame({"index": np.arange(n), "label": labels})
    df["sku"] = [classes[c] if 0 <= c < len(classes) else str(c) for c in labels]
    df["train_count"] = [counts[c] if 0 <= c < len(counts) else 0 for c in labels]
    for key in sorted({k for a in attrs.values() for k in a}):
        df[key] = [attrs.get(s, {}).get(key, "") for s in df["sku"]]
    df["clean_correct"] = np.asarray(data["clean_correct"], dtype=bool)
    _add_attack_columns(df, data["stages"], classes, (data.get("header") or {}).get("eps", []))
    _add_target_columns(df, data["stages"])
    return df


def _add_target_columns(df: pd.DataFrame, stages: dict) -> None:
    """``<attack> targets@<eps>``: the classes a targeted attack aimed at, per example it attacked."""
    for key, st in stages.items():
        if "targets" in st:
            name, label = key.split(":", 1)[1].split("@", 1)
            aimed = {int(i): list(t) for i, t in st["targets"].items()}
            df[f"{name} targets@{label}"] = [aimed.get(i) for i in range(len(df))]


def _add_attack_columns(df: pd.DataFrame, stages: dict, classes: list[str], evaluated: list[str]) -> None:
    """robust@<eps> per eps, and for fooled examples the first (smallest eps) fooling attack and class.
    An eps of the evaluation with no stage (no example was left to attack there: none was
    classified correctly) still gets its column, all False."""
    parsed = sorted(((label_value(k.split("@", 1)[1]), int(k.split(":", 1)[0]), k) for k in stages))
    labels = by_eps({k.split("@", 1)[1] for k in stages} | set(evaluated))
    n = len(df)
    fooled_by, fooled_at = [None] * n, [None] * n
    adv = np.full(n, -1, dtype=np.int64)
    for _, _, key in parsed:  # smallest eps first, then suite order: the first fooling stage wins
        name, label = key.split(":", 1)[1].split("@", 1)
        st = stages[key]
        for i, c in zip(st["fooled"], st.get("adv_class", [-1] * len(st["fooled"]))):
            if fooled_at[i] is None:
                fooled_by[i], fooled_at[i], adv[i] = name, label, c
    value = {lab: label_value(lab) for lab in labels}
    first = np.array([value[f] if f is not None else np.inf for f in fooled_at])
    for lab in labels:
        df[ROBUST + lab] = df["clean_correct"].to_numpy() & (first > value[lab])
    df["fooled_by"], df["fooled_at"], df["adv_class"] = fooled_by, fooled_at, adv
    df["adv_sku"] = [classes[c] if 0 <= c < len(classes) else None for c in adv]
    df["largest_robust_eps"] = _largest_robust(df, labels, value)


def _largest_robust(df: pd.DataFrame, labels: list[str], value: dict) -> np.ndarray:
    out = np.where(df["clean_correct"].to_numpy(), 0.0, np.nan)
    for lab in labels:  # increasing eps: robustness is monotone, so the last true one wins
        out = np.where(df[ROBUST + lab].to_numpy(), value[lab], out)
    return out


def eps_labels(df: pd.DataFrame) -> list[str]:
    """The evaluated eps labels of a per-example table, smallest first."""
    return [c[len(ROBUST):] for c in df.columns if c.startswith(ROBUST)]


def per_sku(df: pd.DataFrame) -> pd.DataFrame:
    """Per-SKU test count, training count, clean and robust accuracy (one row per SKU in the test set)."""
    cols = {"n": ("index", "size"), "train_count": ("train_count", "first"), "clean_acc": ("clean_correct", "mean")}
    cols.update({f"robust_acc@{lab}": (ROBUST + lab, "mean") for lab in eps_labels(df)})
    return df.groupby("sku", sort=True).agg(**cols).reset_index()
