"""``advrp2k study skus``: how robustness changes with the number of fine-grained SKUs.

For each SKU count, a stand-in with exactly ``per_sku`` images per SKU (the same for every count,
the same image size and seed; a smaller stand-in's SKUs are the first ones of a larger one) is
written, a standard and a Madry model are trained (the quick protocol) and each is evaluated
under the ranking suite (PGD-20 + AutoAttack standard at 4/255 and 8/255) on its whole test
split. Every step is the ordinary ``eval`` pipeline, so models are cached, evaluations resume,
and a finished one is reported from its entry without attacking again. Numbers are synthetic.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from advrp2k.core.eps import parse_eps
from advrp2k.core.io import write_json, atomic_write
from advrp2k.core.paths import cache_dir
from advrp2k.jobs.job import Job
from advrp2k.jobs.protocols import get_protocol

DEFAULT_SKUS = (59, 240, 960, 2388)
#: (defense, its training eps) of the study's two models
MODELS = (("standard", None), ("madry", "8/255"))


@dataclass
class StudyPlan:
    skus: tuple[int, ...] = DEFAULT_SKUS
    per_sku: tuple[int, int] = (12, 3)  # train, test images per SKU
    image_size: int = 16
    seed: int = 0
    device: str = "auto"
    leaderboard: Path | None = None
    progress: Callable | None = None


def stand_in_for(n_skus: int, plan: StudyPlan) -> Path:
    """The stand-in of ``n_skus`` SKUs, written once into the cache."""
    from advrp2k.data.synth_scale import generate_scaled

    root = cache_dir("datasets", f"study-skus{n_skus}-per{plan.per_sku[0]}+{plan.per_sku[1]}-{plan.image_size}px"
                                 f"-seed{plan.seed}")
    if not (root / "meta.csv").is_file():
        generate_scaled(root, n_skus, size=plan.image_size, seed=plan.seed, per_sku=plan.per_sku, progress=plan.progress)
    return root


def run_study(plan: StudyPlan) -> dict:
    """Train and evaluate every (SKU count, model) pair; return the study's table as a dict."""
    from advrp2k.jobs.run import ranking_suite, run_eval

    rows = []
    for n in plan.skus:
        root = stand_in_for(n, plan)
        for defense, eps in MODELS:
            where = {"leaderboard": plan.leaderboard} if plan.leaderboard is not None else {}
            job = Job(defense=defense, eps=parse_eps(eps) if eps else None, data=root,
                      protocol=get_protocol("quick").override(image_size=plan.image_size), attacks=ranking_suite(),
                      device=plan.device, seed=plan.seed, progress=plan.progress,
                      explicit={"image_size": plan.image_size}, **where)
            out = run_eval(job)
            rows.append(_row(n, defense, eps, out))
    return {"study": "skus", "synthetic": True, "per_sku": list(plan.per_sku), "image_size": plan.image_size,
            "seed": plan.seed, "protocol": "quick training; ranking suite (PGD-20 + AutoAttack standard)",
            "rows": rows}


def _row(n: int, defense: str, eps: str | None, out: dict) -> dict:
    entry = out["entry"]
    robust = entry["robust_acc"].get("8/255")
    ci = entry.get("ci95", {})
    return {"skus": n, "defense": defense, "train_eps": eps, "model_id": entry["model_id"], "dataset": entry["dataset"],
            "n_test": entry["n_examples"], "clean": entry["clean_acc"], "clean_ci95": ci.get("clean_acc"),
            "robust_4": entry["robust_acc"].get("4/255"), "robust_4_ci95": ci.get("robust_acc", {}).get("4/255"),
            "robust_8": robust, "robust_8_ci95": ci.get("robust_acc", {}).get("8/255"),
            "robust_over_clean": robust / entry["clean_acc"] if entry["clean_acc"] else None,
            "flags": [f["id"] for f in entry.get("flags", [])], "entry": out["path"],
            "train_wall_s": entry["reproducibility"]["wall_s"].get("train"),
            "eval_wall_s": entry["reproducibility"]["wall_s"].get("eval")}


def table_markdown(study: dict) -> str:
    """The study as a Markdown table, accuracies in % with 95 % intervals."""
    def pct(v, ci=None):
        if v is None:
            return "-"
        return f"{v:.2%}" + (f" [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else "")

    lines = [f"SKUs vs robustness (synthetic stand-ins, {study['per_sku'][0]} train + {study['per_sku'][1]} test "
             f"images per SKU, {study['image_size']} px; {study['protocol']})", "",
             "| SKUs | model | test images | clean | robust @ 4/255 | robust @ 8/255 | robust / clean @ 8/255 |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in study["rows"]:
        name = "standard" if r["defense"] == "standard" else f"{r['defense']} {r['train_eps']}"
        ratio = "-" if r["robust_over_clean"] is None else f"{r['robust_over_clean']:.3f}"
        lines.append(f"| {r['skus']:,} | {name} | {r['n_test']:,} | {pct(r['clean'], r['clean_ci95'])} | "
                     f"{pct(r['robust_4'], r['robust_4_ci95'])} | {pct(r['robust_8'], r['robust_8_ci95'])} | {ratio} |")
    return "\n".join(lines) + "\n"


def study_svg(study: dict, width: int = 460, height: int = 260) -> str:
    """Clean and 8/255 robust accuracy of each model against the number of SKUs (log scale), with
    the 95 % intervals as vertical bars."""
    import math
    import html

    rows = study["rows"]
    counts = sorted({r["skus"] for r in rows})
    lo, hi = math.log(min(counts)), math.log(max(counts)) if len(counts) > 1 else math.log(min(counts)) + 1
    px = lambda n: 50 + (math.log(n) - lo) / (hi - lo or 1) * (width - 80)  # noqa: E731
    py = lambda a: height - 30 - a * (height - 50)  # noqa: E731
    colours = {("standard", "clean"): "#1f77b4", ("standard", "robust_8"): "#aec7e8",
               ("madry", "clean"): "#d62728", ("madry", "robust_8"): "#ff9896"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11">',
             f'<line x1="50" y1="{height - 30}" x2="{width - 20}" y2="{height - 30}" stroke="#333"/>',
             f'<line x1="50" y1="20" x2="50" y2="{height - 30}" stroke="#333"/>']
    for n in counts:
        parts.append(f'<text x="{px(n):.1f}" y="{height - 14}" text-anchor="middle">{n:,}</text>')
    for a in (0, 0.5, 1):
        parts.append(f'<text x="44" y="{py(a) + 4:.1f}" text-anchor="end">{a:.0%}</text>')
    legend_y = 14
    for (defense, metric), colour in colours.items():
        pts = sorted((r["skus"], r[metric], r.get(f"{metric}_ci95") if metric != "clean" else r.get("clean_ci95"))
                     for r in rows if r["defense"] == defense and r[metric] is not None)
        if not pts:
            continue
        path = " ".join(f"{px(n):.1f},{py(a):.1f}" for n, a, _ in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for n, a, ci in pts:
            if ci:
                parts.append(f'<line x1="{px(n):.1f}" x2="{px(n):.1f}" y1="{py(ci[0]):.1f}" y2="{py(ci[1]):.1f}" '
                             f'stroke="{colour}"/>')
        label = html.escape(f"{defense} {'clean' if metric == 'clean' else 'robust 8/255'}")
        parts.append(f'<text x="{width - 150}" y="{legend_y}" fill="{colour}">{label}</text>')
        legend_y += 13
    parts.append(f'<text x="{width / 2:.0f}" y="{height - 2}" text-anchor="middle">SKUs (log scale)</text></svg>')
    return "\n".join(parts) + "\n"


def write_study(study: dict, folder: Path) -> list[Path]:
    """``skus.json``, ``skus.md`` and ``skus.svg`` under ``folder`` (written atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "skus.json", folder / "skus.md", folder / "skus.svg"]
    write_json(paths[0], study)
    atomic_write(paths[1], lambda f: f.write(table_markdown(study).encode()))
    atomic_write(paths[2], lambda f: f.write(study_svg(study).encode()))
    return paths
