"""Inline SVG plots for the leaderboard cards, drawn at build time (no JavaScript, no network).

Each function takes analysis output (plain dicts from ``advrp2k.analysis.analyses``) and returns SVG
markup; every number in it comes from the entry. Text is escaped.
"""
from __future__ import annotations

from advrp2k.core.eps import label_value

import html

LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 40


def _frame(width: int, height: int, label: str, body: str, xlabel: str) -> str:
    grid = "".join(f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{_y(a, height):.1f}" y2="{_y(a, height):.1f}" '
                   f'class="grid"/><text x="{LEFT - 6}" y="{_y(a, height) + 4:.1f}" text-anchor="end">{int(a * 100)}%'
                   f'</text>' for a in (0, .25, .5, .75, 1))
    return (f'<svg class="plot" role="img" aria-label="{html.escape(label)}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">{grid}{body}'
            f'<text x="{(width + LEFT) / 2}" y="{height - 6}" text-anchor="middle">{html.escape(xlabel)}</text></svg>')


def _y(acc: float, height: int) -> float:
    return TOP + (height - TOP - BOTTOM) * (1 - acc)


def accuracy_svg(entry: dict, width: int = 420, height: int = 230) -> str:
    """Accuracy versus eps (clean at eps 0), with the 95 % Wilson band when the entry has one."""
    if entry.get("curve"):
        c = entry["curve"]
        pts = [(e * 255, a) for e, a in zip(c["eps"], c["envelope"])]
        band = [(e * 255, lo, hi) for e, (lo, hi) in zip(c["eps"], c["ci95"])]
    else:
        pts = [(0.0, entry["clean_acc"])] + sorted(
            (entry.get("eps", {}).get(k, label_value(k)) * 255, v) for k, v in entry["robust_acc"].items())
        band = []
    xmax = max(8.0, max(p[0] for p in pts))
    sx = lambda e: LEFT + (width - LEFT - RIGHT) * e / xmax  # noqa: E731
    body = ""
    if band:
        outline = [(sx(e), _y(hi, height)) for e, _, hi in band] + [(sx(e), _y(lo, height)) for e, lo, _ in band[::-1]]
        body += f'<polygon class="band" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in outline)}"/>'
    body += "".join(f'<text x="{sx(e):.1f}" y="{height - BOTTOM + 16}" text-anchor="middle">{e:g}</text>'
                    for e, _ in pts)
    body += f'<polyline points="{" ".join(f"{sx(e):.1f},{_y(a, height):.1f}" for e, a in pts)}" class="curve"/>'
    body += "".join(f'<circle cx="{sx(e):.1f}" cy="{_y(a, height):.1f}" r="4"><title>eps {e:g}/255: {100 * a:.2f}%'
                    f'</title></circle>' for e, a in pts)
    return _frame(width, height, "accuracy versus eps", body, "l_inf eps (/255)")


def fig7_svg(long_tail: dict, width: int = 420, height: int = 230) -> str:
    """The paper's Fig. 7 view under attack: groups of 10 SKUs sorted by training count,
    mean clean (grey) and robust (blue) top-1 per group."""
    groups = long_tail.get("fig7", [])
    if not groups:
        return ""
    step = (width - LEFT - RIGHT) / max(1, len(groups))
    sx = lambda i: LEFT + step * (i + 0.5)  # noqa: E731
    body = ""
    for key, cls in (("clean_acc", "curve clean"), ("robust_acc", "curve")):
        body += f'<polyline class="{cls}" points="{" ".join(f"{sx(i):.1f},{_y(g[key], height):.1f}" for i, g in enumerate(groups))}"/>'
    ticks = sorted({0, len(groups) // 2, len(groups) - 1})
    body += "".join(f'<text x="{sx(i):.1f}" y="{height - BOTTOM + 16}" text-anchor="middle">'
                    f'{groups[i]["median_train"]:g}</text>' for i in ticks)
    body += "".join(f'<circle cx="{sx(i):.1f}" cy="{_y(g["robust_acc"], height):.1f}" r="3"><title>SKUs '
                    f'{g["first"] + 1}-{g["first"] + 10} (median {g["median_train"]:g} train images): clean '
                    f'{100 * g["clean_acc"]:.1f}%, robust {100 * g["robust_acc"]:.1f}%</title></circle>'
                    for i, g in enumerate(groups))
    return _frame(width, height, "accuracy by SKU training count", body,
                  "groups of 10 SKUs by training images (median)")


def severity_svg(severity: dict, width: int = 420, height: int = 200) -> str:
    """Histogram of mistake severity levels (share of fooled examples per level)."""
    hist = severity.get("histogram")
    if not hist or not sum(hist):
        return ""
    total = sum(hist)
    step = (width - LEFT - RIGHT) / len(hist)
    body = ""
    for i, (n, name) in enumerate(zip(hist, severity["levels"])):
        x, y = LEFT + step * i + 6, _y(n / total, height)
        body += (f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{step - 12:.1f}" '
                 f'height="{_y(0, height) - y:.1f}"><title>{html.escape(name)}: {n} ({100 * n / total:.1f}%)</title></rect>'
                 f'<text x="{x + (step - 12) / 2:.1f}" y="{height - BOTTOM + 16}" text-anchor="middle">{i + 1}</text>')
    return _frame(width, height, "mistake severity", body, "severity level (1 sibling ... 4 another product type)")
