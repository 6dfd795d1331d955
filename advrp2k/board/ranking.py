"""The leaderboard's ranking, shared by the site and ``advrp2k export``.

One ranking protocol: entries are ranked by the worst case over the fixed suite, PGD-20 and
AutoAttack standard at 4/255 and 8/255 (what ``advrp2k submit`` runs); an entry evaluated
without that suite is shown but not ranked. Ranking is within one board (dataset and threat
model; real RP2K and synthetic data are never ranked together), by robust accuracy at 8/255,
then clean accuracy. With per-example
results saved beside the entries, each board also gets, on one common test set: exact McNemar
tests between neighbours (Holm-corrected over the board) and bootstrap rank intervals (the same
resampled test sets for every entry).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from advrp2k.analysis.analyses import ranking_statistics
from advrp2k.core.errors import UsageError
from advrp2k.board.entries import entry_file
from advrp2k.analysis.results import ROBUST, examples
from advrp2k.core.ranking_rule import (MIN_APGD_STEPS, MIN_PGD_STEPS, MIN_SQUARE_QUERIES, rank_label,
                                       ranking_labels, ranking_suite_of)

log = logging.getLogger(__name__)
ALPHA = 0.05


def is_ranked(entry: dict) -> bool:
    """True when the entry's attacks include its threat model's ranking suite at every ranked
    budget (``advrp2k.core.ranking_rule``). l_inf and l2: PGD (at least 20 steps, cross-entropy)
    and AutoAttack at its full budget (100 APGD steps, 5,000 Square queries): the standard
    version, or for a randomized model (``evaluation_protocol.randomized``) the field's "rand"
    version, which the evaluator switches to by itself. Another threat model's attacks count by name."""
    attacks = [a for a in entry.get("attacks", []) if isinstance(a, dict)]
    version = "rand" if (entry.get("evaluation_protocol") or {}).get("randomized") else "standard"
    threat = entry.get("threat_model", "linf")

    def has(label, test):
        return any(a.get("eps_label") == label and test(a) for a in attacks)

    def full(name):
        if name == "pgd":
            return lambda a: a.get("name") == "pgd" and (a.get("steps") or 0) >= MIN_PGD_STEPS and a.get("loss", "ce") == "ce"
        if name == "autoattack":
            return lambda a: (a.get("name") == "autoattack" and a.get("version") == version
                              and (a.get("apgd_steps") or 0) >= MIN_APGD_STEPS
                              and (a.get("square_queries") or 0) >= MIN_SQUARE_QUERIES)
        return lambda a: a.get("name") == name

    labels = ranking_labels(threat, (entry.get("data") or {}).get("image_size"))
    return all(has(lab, full(name)) for lab in labels for name, _ in ranking_suite_of(threat))


def rank_key(entry: dict):
    return (-entry["robust_acc"].get(rank_label(entry), 0), -entry["clean_acc"], entry["model_id"])


@dataclass
class Row:
    """One entry of a board: its rank (None: shown apart, not ranked) and why it is not ranked."""

    entry: dict
    rank: int | None
    unranked: str | None


def test_set(entry: dict) -> tuple[str | None, int]:
    return entry.get("data", {}).get("fingerprint"), entry["n_examples"]


def whole_test_set(board: list[dict]) -> tuple[str | None, int] | None:
    """The board's whole test set, ``(data fingerprint, number of test images)``: on the fingerprint
    most of its entries share, the split's size as entries record it (``data.n_test``), else
    the largest evaluation of it (entries written before ``n_test`` was recorded)."""
    if not board:
        return None
    sizes: dict[str | None, int] = {}
    for e in board:
        fp, n = test_set(e)
        sizes[fp] = max(sizes.get(fp, 0), e.get("data", {}).get("n_test") or n)
    return max(sizes.items(), key=lambda t: (sum(test_set(e) == t for e in board), t[1]))


def unranked_reason(entry: dict, whole: tuple[str | None, int] | None) -> str | None:
    """Why ``entry`` is shown apart instead of ranked (None: it is ranked)."""
    if not is_ranked(entry):
        suite = " + ".join({"pgd": "PGD-20", "autoattack": "AutoAttack"}.get(a, a)
                           for a, _ in ranking_suite_of(entry.get("threat_model", "linf")))
        return f"evaluated without the ranking suite ({suite})"
    fp, n = test_set(entry)
    if whole is not None and fp == whole[0] and n < whole[1]:
        return f"partial evaluation: {n} of {whole[1]} test images"
    if whole is not None and fp != whole[0]:
        return "evaluated on another test set than the board's"
    return None


def boards(entries: list[dict]) -> dict[tuple[str, str], list[Row]]:
    """Entries grouped by (dataset, threat model): the ranked ones (ranking suite, the board's whole
    test set) in rank order, then the others with the reason they are shown apart."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for e in entries:
        grouped.setdefault((e["dataset"], e["threat_model"]), []).append(e)
    out = {}
    for key, board in sorted(grouped.items()):
        whole = whole_test_set(board)
        marked = sorted(((e, unranked_reason(e, whole)) for e in board), key=lambda m: (m[1] is not None, rank_key(m[0])))
        out[key] = [Row(e, k if why is None else None, why) for k, (e, why) in enumerate(marked, 1)]
    return out


def board_statistics(leaderboard: str | Path, rows: list[Row], seed: int = 0) -> dict[str, dict]:
    """Per model id: ``rank_ci95`` and, towards the next entry down, ``next_p_holm`` and
    ``next_differs``, computed over exactly the ranked entries shown: when one of them has no
    usable per-example results, the board gets no statistics (rather than statistics of another list)."""
    tables, ids = [], []
    for e in (r.entry for r in rows if r.rank is not None):
        try:
            df = examples(entry_file(leaderboard, e["dataset"], e["threat_model"], e["model_id"]))
        except UsageError as exc:
            log.info("no ranking statistics for this board: %s: %s", e["model_id"], exc)
            return {}
        label = rank_label(e)
        if ROBUST + label not in df or (tables and len(df) != len(tables[0])):
            log.info("no ranking statistics for this board: %s has no per-example results at %s on its test set",
                     e["model_id"], label)
            return {}
        tables.append(df[ROBUST + label].to_numpy())
        ids.append(e["model_id"])
    if not ids:
        return {}
    stats = ranking_statistics(np.stack(tables), seed=seed)
    out = {mid: {"rank_ci95": list(stats["rank_ci95"][i])} for i, mid in enumerate(ids)}
    for i, p in enumerate(stats["neighbour_p_holm"]):
        out[ids[i]].update({"next_p_holm": p, "next_differs": p < ALPHA, "next_model_id": ids[i + 1]})
    return out


def ranked_table(leaderboard: str | Path, entries: list[dict]) -> pd.DataFrame:
    """The ranked leaderboard as a flat table with intervals (one row per entry)."""
    rows = []
    for (dataset, threat), board in boards(entries).items():
        stats = board_statistics(leaderboard, board)
        for r in board:
            e = r.entry
            ci, st = e.get("ci95", {}), stats.get(e["model_id"], {})
            row = {"dataset": dataset, "threat_model": threat, "synthetic": e["synthetic"],
                   "rank": r.rank, "not_ranked_because": r.unranked,
                   "rank_ci95_low": (st.get("rank_ci95") or [None])[0],
                   "rank_ci95_high": (st.get("rank_ci95") or [None, None])[1],
                   "model_id": e["model_id"], "name": e.get("name", ""), "defense": e["defense"],
                   "train_eps": e.get("train_eps_label"), "arch": e["arch"], "n_examples": e["n_examples"],
                   "clean_acc": e["clean_acc"], **_ci("clean_acc", ci.get("clean_acc"))}
            for label, acc in e["robust_acc"].items():
                row[f"robust_acc@{label}"] = acc
                row.update(_ci(f"robust_acc@{label}", ci.get("robust_acc", {}).get(label)))
            for label, acc in (e.get("autoattack_acc") or {}).items():
                row[f"autoattack_acc@{label}"] = acc
            for label, acc in paper_protocol_acc(e).items():
                row[f"pgd_acc@{label}"] = acc
            row.update({"differs_from_next": st.get("next_differs"), "next_p_holm": st.get("next_p_holm"),
                        "unreliable": e.get("unreliable", False),
                        "data_fingerprint": e.get("data", {}).get("fingerprint")})
            rows.append(row)
    return pd.DataFrame(rows)


def _ci(name: str, interval) -> dict:
    low, high = interval if isinstance(interval, list) and len(interval) == 2 else (None, None)
    return {f"{name}_ci95_low": low, f"{name}_ci95_high": high}


def paper_protocol_acc(entry: dict) -> dict[str, float]:
    """Robust accuracy under the paper's protocol (PGD alone), when the entry can tell it."""
    per = entry.get("per_attack") or {}
    if "pgd" in per:
        return per["pgd"]
    names = {a.get("name") for a in entry.get("attacks", []) if isinstance(a, dict)}
    return dict(entry["robust_acc"]) if names == {"pgd"} and not entry.get("escalation") else {}
