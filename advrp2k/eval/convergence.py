"""The convergence check, at every eps with survivors: doubling PGD's steps and restarts must not
lower robust accuracy by more than 0.5 points.

At each eps, smallest first, a fixed random sample of the survivors (``convergence_sample``: all
of them when there are fewer than ``CONVERGENCE_SAMPLE``) is attacked again through the engine,
so every point it finds is re-verified in fp32, saved with the per-example results (a resumed run
does not redo it) and counted: an example fooled at a smaller eps is fooled at every larger one
(the point lies inside the larger ball too). The check reuses what the main attack computed:
a survivor's final point is continued for as many steps again (doubling the steps) and a fresh
restart is added (doubling the restarts); a survivor without a kept point gets the doubled attack
from scratch. The drop at each eps is estimated as the fraction of the sample fooled times the
survivors' share of the test set, with a 95 % Wilson interval; above 0.5 points the check flags
it, and escalation then runs the stronger attacks on every survivor.
"""
from __future__ import annotations

import torch

from advrp2k.analysis.stats import wilson
from advrp2k.core import distributed
from advrp2k.eval.checks import CONVERGENCE_ATTACKS, CONVERGENCE_SAMPLE, convergence_sample
from advrp2k.eval.flags import NOT_CONVERGED
from advrp2k.plugins.attack_spec import AttackSpec

#: The drop in robust accuracy (a fraction) above which the check flags an eps.
CONVERGENCE_TOLERANCE = 0.005


def check_convergence(engine, suite, robust: dict, eps_list, sample: int = CONVERGENCE_SAMPLE):
    """Run the check at every eps with survivors.

    Returns:
        (robust masks with the points the check found counted, flags, the check's record: per
        eps the survivors, sample, fooled and estimated drop, and the attacks it ran) or
        ``(robust, [], None)`` when the suite has no PGD to check.
    """
    spec = next((s for s in suite if s.name in CONVERGENCE_ATTACKS), None)
    if spec is None:
        return robust, [], None
    robust = {k: v.clone() for k, v in robust.items()}
    first, flags, per_eps = len(engine.check_configs), [], {}
    for position, eps in enumerate(eps_list):
        survivors = robust[eps.label].clone()  # before this eps's finds are counted
        idx = convergence_sample(survivors, sample)
        if not len(idx):
            continue
        found = _attack_sample(engine, spec, eps, idx)
        for later in eps_list[position:]:  # a point inside this ball is inside every larger one
            robust[later.label] &= ~found
        record = _estimate(int(survivors.sum()), len(idx), int(found.sum()), len(survivors))
        per_eps[eps.label] = record
        if record["drop"] > CONVERGENCE_TOLERANCE:
            flags.append(_flag(spec.build(eps), eps, record))
    return robust, flags, {"per_eps": per_eps, "ran": engine.check_configs[first:],
                           "tolerance": CONVERGENCE_TOLERANCE, "counted": True}


def _attack_sample(engine, spec: AttackSpec, eps, idx: torch.Tensor) -> torch.Tensor:
    """The stronger PGD on the sample at ``eps``; a bool mask of the examples it fooled."""
    base = spec.build(eps)
    sampled = torch.zeros(len(engine.y), dtype=torch.bool)
    sampled[idx] = True
    points = engine.final_points.get(eps.label, {})
    has_point = torch.zeros_like(sampled)
    has_point[[i for i in idx.tolist() if i in points]] = True
    runs = ((has_point, {"steps": base.steps}, {eps.label: points}),  # continuing doubles the steps taken
            (~has_point & engine.mine, {"steps": 2 * base.steps}, None))
    still = torch.ones_like(sampled)
    for rows, steps, start_points in runs:
        rows = rows & sampled
        if not sum(distributed.all_gather(int(rows.sum()))):  # every process decides alike
            continue
        stronger = AttackSpec(spec.name, {**spec.options, **steps, "restarts": 2 * base.restarts, "random_start": True,
                                          "seed": base.seed + 1}, spec.threat)
        masks = engine.run([stronger], [eps], per_attack=False, start={eps.label: rows}, points=start_points,
                           check=True)
        still &= masks[stronger.name][eps.label] | ~rows
    return sampled & ~still


def _estimate(survivors: int, sampled: int, fooled: int, n: int) -> dict:
    share = survivors / max(1, n)
    low, high = (share * b for b in wilson(fooled, sampled))
    return {"survivors": survivors, "sampled": sampled, "fooled": fooled,
            "drop": fooled / max(1, sampled) * share, "drop_ci95": [low, high]}


def _flag(base, eps, record: dict) -> dict:
    low, high = record["drop_ci95"]
    return NOT_CONVERGED.flag(
        f"PGD with {2 * base.steps} steps and {2 * base.restarts} restarts fooled {record['fooled']} of "
        f"{record['sampled']} sampled survivors at {eps.label}: robust accuracy about {100 * record['drop']:.2f} "
        f"points lower (95 % interval {100 * low:.2f} to {100 * high:.2f}); the points it found are counted")
