"""``advrp2k reproduce table5``: the paper's Table 5, measured, beside the paper's numbers."""
from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

from advrp2k.core.eps import parse_eps
from advrp2k.core.io import write_json, write_text
from advrp2k.jobs.run import Job, run_eval
from advrp2k.board.paper import TABLE5, TABLE5_ROWS
from advrp2k.board.ranking import paper_protocol_acc
from advrp2k.core.ranking_rule import RANKING_EPS, RANKING_EPS_LABELS

def reproduce(base: Job, log=lambda msg: None) -> dict:
    """Train (or reuse) and evaluate the three models; write table5.json and table5.md.

    Every row is also written as a normal leaderboard entry. A row whose entry already
    matches the model, data and attack configuration is not evaluated again.
    """
    attacks = base.suite()
    eps_list = list(RANKING_EPS)
    rows, entries = [], []
    jobs = [dataclasses.replace(base, defense=defense, eps=parse_eps(eps) if eps else None, attacks=attacks,
                                attack_eps=eps_list, reuse_entry=True) for defense, eps in TABLE5]
    _say_plan(jobs, log)
    for (defense, eps), job in zip(TABLE5, jobs):
        log(f"row {TABLE5_ROWS[(defense, eps)]}")
        out = run_eval(job)
        entry = out["entry"]
        if entry is None:  # under torchrun only the main process writes the table
            continue
        entries.append(entry)
        rows.append({"name": TABLE5_ROWS[(defense, eps)], "defense": defense, "train_eps": eps,
                     "model_id": entry["model_id"], "entry": out["path"], "reused": out.get("reused", False),
                     "measured": {"clean_acc": entry["clean_acc"], "robust_acc": paper_protocol_acc(entry),
                                  "ci95": entry.get("ci95", {})},
                     "worst_case": entry["robust_acc"],
                     "paper": TABLE5[(defense, eps)], "per_group": entry.get("per_group", {}),
                     "flags": entry.get("flags", [])})
    if not entries:
        return {}
    first = entries[0]
    table = {"rows": rows, "claims": claims(rows), "protocol": base.protocol.to_dict(),
             "dataset": {"name": first["dataset"], "synthetic": first["synthetic"], **first["data"]},
             "attack": {"suite": [a.name for a in attacks], "configs": first["attacks"]},
             "date": datetime.date.today().isoformat()}
    out_dir = Path(base.leaderboard)
    write_json(out_dir / "table5.json", table)
    write_text(out_dir / "table5.md", render_markdown(table))
    return table


def _say_plan(jobs: list[Job], log) -> None:
    """Before any training: which rows reuse a cached model and how long the others take here
    (timed training steps times the batches; ``advrp2k.jobs.model_store.training_estimate``)."""
    from advrp2k.core import distributed
    from advrp2k.jobs.job import load_job_data
    from advrp2k.jobs.model_store import training_estimate
    from advrp2k.models.factory import resolve_device

    if not distributed.is_main():
        return
    device = resolve_device(jobs[0].device)
    prep = load_job_data(jobs[0])
    total = 0.0
    for job in jobs:
        name = TABLE5_ROWS[(job.defense, job.eps.label if job.eps else None)]
        seconds = training_estimate(job, prep, device)
        total += seconds or 0.0
        log(f"  {name}: " + ("its model is cached: no training" if seconds is None else
                             f"trains, about {seconds / 60:.0f} min here (timed training steps x batches)"))
    if total:
        log(f"  training in all: about {total / 60:.0f} min here; then each row is evaluated")


def claims(rows: list[dict]) -> list[dict]:
    """Every claim the paper's text makes about its Table 5, each with the test applied to the
    measured rows (robust accuracy under the paper's protocol, PGD) and whether it holds."""
    m = {(r["defense"], r["train_eps"]): r["measured"] for r in rows}
    std, m4, m8 = m[("standard", None)], m[("madry", "4/255")], m[("madry", "8/255")]
    return [
        {"claim": "the regular model can always be fooled by adversarial attacks",
         "quote": "regular model can always be fooled by adversarial attacks (Table 5 caption)",
         "test": "regular model's robust accuracy <= 1 % at 4/255 and at 8/255 (paper: 0.00 % and 0.00 %)",
         "holds": all(std["robust_acc"][e] <= 0.01 for e in RANKING_EPS_LABELS)},
        {"claim": "adversarial training drastically decreases clean accuracy",
         "quote": "adversarial training not only drastically decreases the accuracy on standard test images (Sec. 4.3)",
         "test": "each Madry model's clean accuracy >= 25 points below the regular model's "
                 "(paper: -55.0 and -74.3 points)",
         "holds": all(std["clean_acc"] - r["clean_acc"] >= 0.25 for r in (m4, m8))},
        {"claim": "adversarial training shows little effect on defending adversarial examples",
         "quote": "but also shows little effect on defending adversarial examples (Sec. 4.3)",
         "test": "each Madry model keeps <= 15 % robust accuracy at its own training eps "
                 "(paper: 12.35 % at 4/255 and 5.26 % at 8/255)",
         "holds": m4["robust_acc"]["4/255"] <= 0.15 and m8["robust_acc"]["8/255"] <= 0.15},
    ]


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def render_markdown(table: dict) -> str:
    ds = table["dataset"]
    kind = "synthetic, so these are not RP2K results" if ds["synthetic"] else "real RP2K data"
    lines = ["# Table 5, reproduced by advrp2k", "",
             f"Data: {ds['description']} [{kind}]; {ds['n_classes']} classes, fingerprint `{ds['fingerprint'][:16]}`.",
             f"Protocol: `{table['protocol']['name']}` ({table['protocol']['arch']}, {table['protocol']['epochs']} epochs). "
             f"Attack: {', '.join(table['attack']['suite'])} "
             f"({table['attack']['configs'][0].get('steps', '?')} steps) at 4/255 and 8/255.", "",
             "| model | clean (measured) | clean (paper) | 4/255 (measured) | 4/255 (paper) | 8/255 (measured) | 8/255 (paper) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in table["rows"]:
        me, pa = r["measured"], r["paper"]
        lines.append(f"| {r['name']} | {_pct(me['clean_acc'])} | {_pct(pa['clean_acc'])} | "
                     + " | ".join(f"{_pct(me['robust_acc'][e])} | {_pct(pa['robust_acc'][e])}" for e in RANKING_EPS_LABELS) + " |")
    held = [c for c in table["claims"] if c["holds"]]
    where = "the synthetic stand-in (not RP2K)" if ds["synthetic"] else "real RP2K data"
    lines += ["", f"The claims the paper's text makes about Table 5, tested on {where}: "
                  f"{len(held)} of {len(table['claims'])} hold.", ""]
    lines += [f"- **{'holds' if c['holds'] else 'does NOT hold'}**: {c['claim']} (\"{c['quote']}\"); "
              f"test: {c['test']}" for c in table["claims"]]
    lines += _group_tables(table)
    return "\n".join(lines) + "\n"


def _group_tables(table: dict) -> list[str]:
    out = []
    for key, title in (("product_type", "product type"), ("shape", "shape")):
        groups = sorted({g for r in table["rows"] for g in r["per_group"].get(key, {})})
        if not groups:
            continue
        out += ["", f"## Per {title} (clean / 4/255 / 8/255)", "",
                "| " + title + " | " + " | ".join(r["name"] for r in table["rows"]) + " |",
                "| --- |" + " ---: |" * len(table["rows"])]
        for g in groups:
            cells = []
            for r in table["rows"]:
                v = r["per_group"].get(key, {}).get(g)
                cells.append("n/a" if v is None else
                             f"{100 * v['clean_acc']:.1f} / {100 * v['robust_acc']['4/255']:.1f} / "
                             f"{100 * v['robust_acc']['8/255']:.1f} (n={v['n']})")
            out.append(f"| {g} | " + " | ".join(cells) + " |")
    return out
