"""The leaderboard's ranking, shared by the site and ``advrp2k export``.

Entries are ranked within one board (dataset and threat model; real RP2K and synthetic data
are never ranked together) by robust accuracy at 8/255, then clean accuracy. With per-example
results saved beside the entries, each board also gets, on one common test set: exact McNemar
tests between neighbours (Holm-corrected over the board) and bootstrap rank intervals (the same
resampled test sets for every entry).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .analyses import ranking_statistics
from .errors import UsageError
from .results import ROBUST, examples

log = logging.getLogger(__name__)
RANK_EPS = "8/255"
ALPHA = 0.05


def rank_key(entry: dict):
    return (-entry["robust_acc"].get(RANK_EPS, 0), -entry["clean_acc"], entry["model_id"])


def boards(entries: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Entries grouped by (dataset, threat model), each group in rank order."""
    out: dict[tuple[str, str], list[dict]] = {}
    for e in entries:
        out.setdefault((e["dataset"], e["threat_model"]), []).append(e)
    return {k: sorted(v, key=rank_key) for k, v in sorted(out.items())}


def board_statistics(leaderboard: str | Path, rows: list[dict], seed: int = 0) -> dict[str, dict]:
    """Per model id: ``rank_ci95`` and, towards the next entry down, ``next_p_holm`` and
    ``next_differs``. Entries without usable per-example results, or evaluated on another test
    set than the board's first such entry, are left out (and get no statistics)."""
    tables, ids, reference = [], [], None
    for e in rows:
        path = Path(leaderboard) / "entries" / e["dataset"] / e["threat_model"] / f"{e['model_id']}.json"
        try:
            df = examples(path)
        except UsageError as exc:
            log.info("no ranking statistics for %s: %s", e["model_id"], exc)
            continue
        key = (e.get("data", {}).get("fingerprint"), tuple(df["label"]))
        if ROBUST + RANK_EPS not in df or (reference is not None and key != reference):
            continue
        reference = reference or key
        tables.append(df[ROBUST + RANK_EPS].to_numpy())
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
        for rank, e in enumerate(board, 1):
            ci, st = e.get("ci95", {}), stats.get(e["model_id"], {})
            row = {"dataset": dataset, "threat_model": threat, "synthetic": e["synthetic"], "rank": rank,
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
            row.update({"differs_from_next": st.get("next_differs"), "next_p_holm": st.get("next_p_holm"),
                        "unreliable": e.get("unreliable", False),
                        "data_fingerprint": e.get("data", {}).get("fingerprint")})
            rows.append(row)
    return pd.DataFrame(rows)


def _ci(name: str, interval) -> dict:
    low, high = interval if isinstance(interval, list) and len(interval) == 2 else (None, None)
    return {f"{name}_ci95_low": low, f"{name}_ci95_high": high}
