"""The text ``advrp2k eval`` and ``submit`` print for an entry: accuracies with 95 % intervals,
then the long-tail and mistake-severity analyses."""
from __future__ import annotations

from advrp2k.core.eps import by_eps
from advrp2k.core.threat import threat_model


def _ci_text(interval) -> str:
    return f"  [{interval[0]:6.2%}, {interval[1]:6.2%}]" if interval else ""


def format_entry(entry: dict) -> str:
    """The table printed after an evaluation (with 95 % Wilson intervals when the entry has them)."""
    w = 34
    ci = entry.get("ci95", {})
    lines = [f"{entry['model_id']}  ({entry['data']['description']})",
             f"  defense {entry['defense']}" + (f" at eps {entry['train_eps_label']}" if entry.get('train_eps_label') else "")
             + f", arch {entry['arch']}, {entry['n_examples']} test images",
             *([f"  threat model {entry['threat_model']}: {entry['threat']['title']}"] if entry.get("threat") else []),
             "", f"  {'metric':<{w}}{'accuracy':>10}" + ("  95 % interval" if ci else ""), f"  {'-' * (w + 34)}",
             f"  {'clean top-1':<{w}}{entry['clean_acc']:>9.2%}{_ci_text(ci.get('clean_acc'))}",
             f"  {'clean top-5':<{w}}{entry['top5_acc']:>9.2%}{_ci_text(ci.get('top5_acc'))}"]
    names = sorted({a['name'] for a in entry['attacks']})
    for label, acc in ((lab, entry["robust_acc"][lab]) for lab in by_eps(entry["robust_acc"])):
        for name, per in entry.get("per_attack", {}).items() if len(names) > 1 else ():
            lines.append(f"  {'  ' + name + ' alone @ ' + label:<{w}}{per[label]:>9.2%}"
                         f"{_ci_text(ci.get('per_attack', {}).get(name, {}).get(label))}")
        robust = "switch-robust" if entry.get("threat_model") == "switch" else "robust"
        what = f"{robust} {names[0]}" if len(names) == 1 else f"{robust}, worst case"
        at = f"severity {label}" if entry.get("threat_model") == "shelf" else label
        lines.append(f"  {what + ' @ ' + at:<{w}}{acc:>9.2%}{_ci_text(ci.get('robust_acc', {}).get(label))}")
    lines += _format_analyses(entry) + _format_switch(entry) + _format_shelf(entry)
    for flag in entry.get("flags", []):
        lines.append(f"  FLAG evaluation potentially unreliable: {flag['check']}: {flag['detail']}")
    proto = entry.get("evaluation_protocol") or {}
    if proto.get("randomized"):
        lines.append(f"  randomized protocol: {proto['reason']}; verdicts over {proto['verdict_passes']} passes, "
                     f"attacks with expectation over transformation")
    esc = entry.get("escalation")
    if esc and not esc["ran"]:  # every remedy the flags called for serves another threat model
        lines.append(f"  NOT ESCALATED: {'; '.join(esc['why'])}; the flag stands")
    elif esc:
        ran = ", ".join(dict.fromkeys(a["name"] for a in esc["ran"]))
        change = "; ".join(f"{k} {esc['robust_acc_before'][k]:.2%} -> {v:.2%}" for k, v in esc["robust_acc_after"].items())
        lines.append(f"  ESCALATED because of {', '.join(esc['why'])}: ran {ran} on the survivors; robust {change}")
    if entry.get("synthetic"):
        lines.append("  (synthetic data: these numbers are not RP2K results)")
    return "\n".join(lines)


def _format_shelf(entry: dict) -> list[str]:
    """Shelf conditions' average case: the mean corruption accuracy per severity, and the worst corruption."""
    sh = entry.get("shelf")
    if not sh:
        return []
    ci = sh.get("mean_ci95", {})
    means = "; ".join(f"{lab} {acc:.1%}" + (f" [{ci[lab][0]:.1%}, {ci[lab][1]:.1%}]" if lab in ci else "")
                      for lab, acc in sh["mean"].items())
    worst_label = list(sh["mean"])[-1]
    worst = min(sh["per_corruption"], key=lambda n: sh["per_corruption"][n][worst_label])
    return ["", f"  mean corruption accuracy (all {sh['n']} images, 95 % interval) at severity {means}",
            f"    hardest corruption at severity {worst_label}: {worst} {sh['per_corruption'][worst][worst_label]:.1%}"]


def _format_switch(entry: dict) -> list[str]:
    """Ticket switching's summary: success rate per budget, median smallest budget, smaller packs."""
    sw = entry.get("switch")
    if not sw:
        return []
    rates = ", ".join(f"{lab} {rate:.1%}" for lab, rate in sw["success_rate"].items())
    median = sw["smallest_budget_median"] or f"above {sw['curve']['labels'][-1]}"
    siblings = (entry.get("threat") or {}).get("siblings", {})
    return ["", f"  ticket switching, of {sw['clean_correct']} clean-correct images: switched to a sibling at {rates}",
            f"    median smallest budget reaching a sibling: {median}; {sw['switched']} switched, "
            f"{sw['to_smaller_pack']} to a smaller pack of the line (a proxy for a cheaper item)",
            f"    siblings: {siblings.get('definition', '?')} for {siblings.get('skus_with_line', '?')} SKUs, "
            f"fallback ({siblings.get('fallback', '?')}) for {siblings.get('skus_with_fallback', '?')}"]


def _format_analyses(entry: dict) -> list[str]:
    """Curve summary, long tail and mistake severity, a few lines each."""
    lines = []
    c = entry.get("curve")
    if c and len(c["eps"]) > 3:
        threat = threat_model(entry.get("threat_model", "linf"))
        half = "not reached" if c["half_clean_eps"] is None else threat.value_text(c["half_clean_eps"])
        lines += ["", f"  curve: half of clean accuracy at {half}; normalised AUC {c['auc']:.3f} "
                      f"(0 to {c['labels'][-1]})"]
    a = entry.get("analysis")
    if not a:
        return lines
    lt, sev = a["long_tail"], a["severity"]
    bins = "; ".join(f"{b['bin'].split(' ')[0]} {b['robust_acc']:.2%} ({b['n_skus']} SKUs)"
                     for b in lt["bins"] if b["robust_acc"] is not None)
    lines += ["", f"  long tail @ {a['eps']}: {bins}",
              f"    class-balanced robust {lt['balanced_robust_acc']:.2%}; worst SKU {lt['worst_sku']['sku']} "
              f"{lt['worst_sku']['robust_acc']:.2%}; bottom-10 % mean {lt['bottom10_mean']:.2%}"]
    if "histogram" in sev:
        hist = ", ".join(f"{lv} {n}" for lv, n in zip(sev["levels"], sev["histogram"]))
        lines.append(f"  mistake severity @ {a['eps']} ({sev['n_fooled']} fooled): {hist}")
    if sev["attractors"]:
        top = sev["attractors"][0]
        lines.append(f"    top attractor {top['sku']} ({top['share']:.0%} of fooled examples)")
    lines += [f"    skipped: {s}" for s in sev["skipped"]]
    return lines
