"""``advrp2k leaderboard build``: the aggregate leaderboard.json and a static site, generated
from the entries (never edited by hand). Jinja2 with autoescape; no CDN or network: every
style and script is inlined, so the site opens from disk. Real-RP2K and synthetic results
are separate tables, never ranked together; the paper's Table 5 rows are shown marked
paper-reported and are not ranked.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import jinja2

from advrp2k.core.io import write_json, write_text
from advrp2k.board.entries import load_entries, read_regular_file
from advrp2k.core.eps import label_value
from advrp2k.board import display
from advrp2k.board.plots import accuracy_svg, fig7_svg, severity_svg
from advrp2k.board.paper import TABLE5, TABLE5_ROWS
from advrp2k.board.ranking import board_statistics, boards, paper_protocol_acc
from advrp2k.core.ranking_rule import RANKING_EPS_LABELS, RANKING_RULE
from advrp2k.core.threat import THREAT_MODELS

TEMPLATES = Path(__file__).with_name("templates")

def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.ChainableUndefined)
    env.filters["pct"] = lambda x: f"{100 * x:.2f}" if isinstance(x, (int, float)) else ""
    env.filters["by_eps"] = lambda d: sorted(d.items(), key=lambda kv: label_value(kv[0]))
    env.filters["ci"] = lambda c: (f"[{100 * c[0]:.1f}, {100 * c[1]:.1f}]" if isinstance(c, list) and len(c) == 2
                                   and all(isinstance(v, (int, float)) for v in c) else "")
    env.filters["safe_link"] = lambda u: u if isinstance(u, str) and u.startswith("https://") else None
    for name in ("param", "params", "display_name", "paper_link", "venue", "reproduce_command"):
        env.filters[name] = getattr(display, name)
    return env


def _card_path(entry: dict) -> str:
    """Where an entry's card lives: ``entries/<dataset>/<id>.html`` for l_inf (the first board's
    links stay as they were), ``entries/<dataset>/<threat>/<id>.html`` for every other threat model."""
    threat = entry.get("threat_model", "linf")
    folder = entry["dataset"] if threat == "linf" else f"{entry['dataset']}/{threat}"
    return f"entries/{folder}/{entry['model_id']}.html"


def _sections(entries: list[dict], leaderboard: Path) -> list[dict]:
    """One ranked table per (dataset, threat model), real data first, with each entry's rank
    interval and whether it differs significantly from the next one down (``_stats``)."""
    order = list(THREAT_MODELS)  # within a dataset, the catalogue's order: linf first
    keys = sorted({(e["dataset"], e["threat_model"], e["synthetic"]) for e in entries},
                  key=lambda k: (k[2], k[0], order.index(k[1]) if k[1] in order else len(order)))
    if not any(not k[2] for k in keys):
        keys.insert(0, ("rp2k", "linf", False))  # the paper's rows have a home even before any real entry
    out = []
    for dataset, threat, synthetic in keys:
        board = boards(entries).get((dataset, threat), [])
        stats = board_statistics(leaderboard, board)
        rows = [r.entry for r in board]
        for r in board:
            r.entry["_stats"] = stats.get(r.entry["model_id"], {})
            r.entry["_rank"], r.entry["_unranked"] = r.rank, r.unranked
            r.entry["_pgd"] = paper_protocol_acc(r.entry)
        paper = _paper_rows() if dataset == "rp2k" and threat == "linf" else []
        out.append({"dataset": dataset, "threat_model": threat, "synthetic": synthetic, "rows": rows, "paper": paper,
                    **_threat_columns(threat, rows)})
    return out


def _threat_columns(threat: str, rows: list[dict]) -> dict:
    """A board's budget columns and headings, its ranking rule and the budget it ranks at: the
    ranking budgets of its threat model, and any other budget its entries were evaluated at."""
    from advrp2k.core.eps import by_eps
    from advrp2k.core.ranking_rule import rank_label, ranking_labels, ranking_rule

    model = THREAT_MODELS.get(threat)
    sizes = {(e.get("data") or {}).get("image_size") for e in rows} or {None}
    labels = set(RANKING_EPS_LABELS) if threat == "linf" else {lab for size in sizes for lab in ranking_labels(threat, size)}
    if threat != "linf":  # l_inf boards keep their two columns; others show every budget evaluated
        labels |= {lab for e in rows for lab in e.get("robust_acc", {})}
    labels = by_eps(labels)
    rank_at = rank_label(rows[0]) if rows else (ranking_labels(threat)[-1] if model else "")
    return {"labels": labels, "headings": {lab: model.heading(lab) if model else lab for lab in labels},
            "rule": ranking_rule(threat) if model else "", "rank_at": rank_at,
            "title": model.title if model else threat}


def _paper_rows() -> list[dict]:
    return [{"name": TABLE5_ROWS[k], "defense": k[0], "train_eps": k[1], **v} for k, v in TABLE5.items()]


def _aggregate(entries: list[dict]) -> dict:
    return {"schema_version": 1, "generated_by": "advrp2k leaderboard build",
            "entries": [{"path": f"entries/{e['dataset']}/{e['threat_model']}/{e['model_id']}.json",
                         **{k: v for k, v in e.items() if not k.startswith("_")}, "ranking": e.get("_stats", {})}
                        for e in entries],
            "paper_table5": _paper_rows()}


def plugins_guide(page: Path) -> str:
    """The markdown of the plugins page (``docs/plugins.md``) without its title; when the page is
    not beside the package (an installed wheel), one line pointing to it."""
    if not page.is_file():
        return "See `docs/plugins.md` in the advrp2k repository: how to write, package and submit a defense."
    text = page.read_text(encoding="utf-8")
    return re.sub(r"\A# [^\n]*\n", "", text).strip()


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def markdown_to_html(md: str) -> str:
    """Just enough Markdown for the plugins guide (docs/plugins.md): paragraphs, numbered steps, fenced code.

    Everything is escaped; numbered steps start a new paragraph; a fence's indentation is
    removed from its code lines.
    """
    out: list[str] = []
    para: list[str] = []
    code: list[str] | None = None
    indent = 0

    def flush():
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    for raw in md.splitlines():
        stripped = raw.strip()
        if stripped.startswith("```"):
            if code is None:
                flush()
                code, indent = [], len(raw) - len(raw.lstrip())
            else:
                out.append(f"<pre><code>{html.escape(chr(10).join(code))}</code></pre>")
                code = None
        elif code is not None:
            code.append(raw[indent:] if raw[:indent].isspace() else raw.lstrip())
        elif not stripped:
            flush()
        else:
            if re.match(r"^\d+\. ", stripped):
                flush()
            para.append(stripped)
    flush()
    return "\n".join(out)


def build_site(leaderboard: str | Path, out: str | Path | None = None, guide: str | Path | None = None) -> dict:
    """Write ``<leaderboard>/leaderboard.json`` and the site (default ``<leaderboard>/site``).

    Returns:
        ``{"entries": n, "problems": [...], "site": path}``; invalid entries are left out and reported.
    """
    leaderboard = Path(leaderboard)
    out = Path(out) if out else leaderboard / "site"
    entries, problems = load_entries(leaderboard)
    sections = _sections(entries, leaderboard)
    write_json(leaderboard / "leaderboard.json", _aggregate(entries))
    env = _env()
    table5 = _read_table5(leaderboard / "table5.json", problems)
    common = {"eps_labels": RANKING_EPS_LABELS, "n_entries": len(entries), "ranking_rule": RANKING_RULE}
    for e in entries:
        e["_card"] = _card_path(e)
        e["_suite"] = "+".join(sorted({a.get("name", "?") for a in e.get("attacks", [])}))
    write_text(out / "index.html", env.get_template("index.html").render(
        sections=sections, table5=table5, root=".", **common))
    for e in entries:
        analysis = e.get("analysis") or {}
        write_text(out / e["_card"], env.get_template("card.html").render(
            e=e, svg=accuracy_svg(e), fig7=fig7_svg(analysis.get("long_tail", {})),
            severity_svg=severity_svg(analysis.get("severity", {})), root="/".join([".."] * e["_card"].count("/")),
            **{**common, "eps_labels": _card_labels(e)}))
    text = plugins_guide(Path(guide) if guide else _default_guide())
    write_text(out / "submit.html", env.get_template("submit.html").render(
        guide_html=markdown_to_html(text), root=".", **common))
    return {"entries": len(entries), "problems": problems, "site": str(out)}


def _card_labels(entry: dict) -> list[str]:
    """The budgets an entry's card shows: l_inf's two, or every budget of another threat model's entry."""
    from advrp2k.core.eps import by_eps

    if entry.get("threat_model", "linf") == "linf":
        return list(RANKING_EPS_LABELS)
    return by_eps(entry.get("robust_acc", {}))


def _read_table5(path: Path, problems: list[str]) -> dict | None:
    """``table5.json`` if present and of the shape ``reproduce table5`` writes; else reported and skipped."""
    if not path.exists() and not path.is_symlink():
        return None
    try:
        table = json.loads(read_regular_file(path))
        rows = table["rows"]
        if not all(isinstance(r["measured"]["robust_acc"], dict) and isinstance(r["paper"], dict) for r in rows):
            raise ValueError("rows without measured and paper results")
        return table
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problems.append(f"{path}: not used: {str(exc)[:200]}")
        return None


def _default_guide() -> Path:
    here = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
    return here if here.is_file() else Path("docs") / "plugins.md"
