"""The evaluator: clean accuracy, then worst case per example over every attack and eps.

Robust accuracy is the fraction of ALL examples classified correctly clean and under every
attack of the suite. Only examples still robust are attacked: clean-misclassified ones never
are, an example leaves the batch the moment it is fooled (inside the attacks), and the larger
eps starts from the smaller eps's survivors and their adversarial points, so robust accuracy
is monotone in eps by construction. Every attack result is re-verified in a separate pass.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from advrp2k.core.eps import Eps
from advrp2k.plugins.attack import frozen_eval
from advrp2k.plugins.attack_spec import AttackSpec  # noqa: F401  (re-exported: part of the evaluator's API)
from advrp2k.eval.checks import (fail_if, fail_if_nonfinite_weights, flag_checks, large_eps_flag,
                                 random_search_flags, state_digest)
from advrp2k.eval.convergence import check_convergence
from advrp2k.core import distributed
from advrp2k.eval.engine import Engine, _batches
from advrp2k.eval.escalation import plan_remedies, protocol_for, randomized_suite
from advrp2k.eval.flags import LOW_PRECISION
from advrp2k.core.precision import OVERTURN_FLAG, fp32_verdicts
from advrp2k.core.batches import batch_images
from advrp2k.eval.state import EvalState

log = logging.getLogger(__name__)

#: Bump when a change to the evaluation alters what it computes, so saved per-example results
#: of the older code are not reported as this code's (2: the convergence check at every eps,
#: its fooling points counted).
EVALUATION_VERSION = 2


@dataclass
class EvalResult:
    labels: torch.Tensor
    clean_correct: torch.Tensor
    top5_correct: torch.Tensor
    robust: dict[str, torch.Tensor]
    fooled_by: list
    attacks: list[dict]
    flags: list[dict]
    counts: dict
    wall_s: float
    per_attack: dict = field(default_factory=dict)
    protocol: dict = field(default_factory=dict)  # deterministic or randomized verdicts
    precision: dict = field(default_factory=dict)  # attack precision, fp32 verdicts, overturned bf16 claims
    escalation: dict | None = None  # remedies run because a check fired, with numbers before and after
    convergence: dict | None = None  # the convergence check per eps (its fooling points are counted)

    @property
    def n_examples(self) -> int:
        return len(self.labels)

    def clean_acc(self) -> float:
        return self.clean_correct.float().mean().item()

    def robust_acc(self) -> dict[str, float]:
        return {k: v.float().mean().item() for k, v in self.robust.items()}

    def per_group(self, classes: list[str], attributes: dict[str, dict[str, str]],
                  keys=("product_type", "shape")) -> dict:
        """Clean and robust accuracy per value of each attribute (e.g. per product type)."""
        out = {}
        for key in keys:
            values = [attributes.get(classes[int(c)], {}).get(key, "") for c in self.labels]
            groups = {}
            for value in sorted(set(values) - {""}):
                m = torch.tensor([v == value for v in values])
                groups[value] = {"n": int(m.sum()), "clean_acc": self.clean_correct[m].float().mean().item(),
                                 "robust_acc": {k: r[m].float().mean().item() for k, r in self.robust.items()}}
            if groups:
                out[key] = groups
        return out


@torch.no_grad()
@fp32_verdicts()
def clean_pass(model, x, y, device, batch_size, progress=None, passes: int = 1):
    """Top-1 and top-5 correctness; with ``passes`` > 1 (a randomized model) top-1 counts only
    if every pass classifies the example correctly. Under torchrun each process classifies its
    share of the examples and the results are gathered."""
    top1, top5 = torch.zeros(len(y), dtype=torch.bool), torch.zeros(len(y), dtype=torch.bool)
    mine = distributed.owned(len(y))
    batches = _batches(mine.nonzero().squeeze(1), batch_size)
    for idx in (progress(batches, desc="clean") if progress else batches):
        xb = batch_images(x, idx, device)
        logits = model(xb).cpu()
        fail_if(not torch.isfinite(logits).all(), "finite outputs",
                f"the model outputs NaN or infinity for {int((~torch.isfinite(logits)).any(1).sum())} of "
                f"{len(idx)} clean test images in a batch, so its predictions mean nothing")
        k = min(5, logits.shape[1])
        top1[idx] = logits.argmax(1) == y[idx]
        top5[idx] = (logits.topk(k, 1).indices == y[idx, None]).any(1)
        for _ in range(passes - 1):
            top1[idx] &= model(xb).argmax(1).cpu() == y[idx]
    for part, (t1, t5) in zip(distributed.owned_parts(len(y)), distributed.all_gather((top1[mine], top5[mine]))):
        top1[part], top5[part] = t1, t5
    return top1, top5


def evaluate(model: nn.Module, x, y: torch.Tensor, attacks: list[AttackSpec], eps_list: list[Eps],
             device: torch.device, batch_size: int = 256, progress: Callable | None = None,
             num_classes: int | None = None, sanity_checks: bool = True, state: EvalState | None = None,
             per_attack: bool = True, escalate: bool = True, precision: str = "fp32", seed: int = 0,
             threat: str = "linf", goal=None, siblings: torch.Tensor | None = None) -> EvalResult:
    """Evaluate ``model`` on images ``x`` (uint8 or [0, 1] float, on the CPU) and labels ``y``.

    Args:
        state: per-example results to resume from and save to after every batch.
        per_attack: run each attack on every clean-correct example (standalone numbers per
            attack, worst case over all of them); False cascades, each attack only seeing the
            survivors of the previous ones (cheaper; worst case only).
        escalate: when a check fires, run the attacks its flag calls for on the examples still
            robust, and report the worst case including them (numbers before and after are kept).
        precision: "fp32" or "bf16" for attack steps (advrp2k.core.precision); verdicts are always fp32,
            and an example counts as fooled only if its point fools the fp32 model.
        seed: the run's seed, added to the seed of every attack that escalation runs (the
            suite's attacks carry it already: ``AttackSpec.reseeded``).
        threat: the threat model (``advrp2k.core.threat``) the suite attacks under; escalation
            runs only remedies that serve it.
        goal: for a targeted threat model (ticket switching, ``advrp2k.eval.siblings.SiblingGoal``),
            ``goal.rows(model, x, y, device, batch_size)`` gives per example the classes that count
            as a success (a bool (examples, classes) tensor); None: any wrong class.
        siblings: (classes, classes) bool, each SKU's siblings in the data's attribute table
            (``advrp2k.eval.siblings.sibling_table``), offered to attacks that use them as target
            hints (MALT adds them to its candidates); they never change what counts as a success.

    A model that is not deterministic is evaluated under the randomized protocol: each attack
    configures itself for it (expectation over transformation) and every verdict is taken over
    ``VERDICT_PASSES`` forward passes.

    Raises:
        IntegrityError: a FAIL-level check failed (ball, box, re-verification, eval mode...).
    """
    start = time.perf_counter()
    model.to(device)
    num_classes = num_classes or int(y.max()) + 1
    state = state or EvalState(None, {})
    fail_if_nonfinite_weights(model, "the model")
    digest = state_digest(model)
    eps_list = sorted(eps_list)
    clean, top5, flags, protocol = _clean_and_protocol(model, x, y, device, batch_size, progress, num_classes,
                                                       sanity_checks, state)
    suite = randomized_suite(attacks, protocol) if protocol.randomized else attacks
    goal_rows = goal.rows(model, x, y, device, batch_size) if goal is not None else None
    engine = Engine(model, x, y, clean, device, batch_size, progress, state, protocol.verdict_passes, precision,
                    goal_rows, siblings)
    by_attack = engine.run(suite, eps_list, per_attack)
    robust = _worst_case(by_attack, eps_list)
    _check_monotone(clean, robust)
    robust, more, convergence = _suite_checks(engine, suite, by_attack, robust, eps_list, protocol) \
        if sanity_checks else (robust, [], None)
    flags += more
    robust, escalation = _escalate(engine, flags, suite, protocol, robust, eps_list, seed, threat) if escalate \
        else (robust, None)
    fail_if(state_digest(model) != digest, "eval mode",
            "the model's weights or BatchNorm statistics changed during evaluation")
    flags += _finish(engine, state, protocol)
    per = {name: {k: v.float().mean().item() for k, v in m.items()} for name, m in by_attack.items()} if per_attack else {}
    return EvalResult(y.clone(), clean, top5, robust, engine.fooled_by, engine.configs, flags, engine.counts,
                      time.perf_counter() - start, per, protocol=protocol.to_dict(), escalation=escalation,
                      precision=engine.precision_record(), convergence=convergence)


def _clean_and_protocol(model, x, y, device, batch_size, progress, num_classes, sanity_checks, state):
    """The preflight checks (which decide the verdict protocol) and the clean verdicts."""
    with frozen_eval(model):  # a model handed over in train mode is evaluated in eval mode
        checked = sanity_checks and len(y) and distributed.is_main()
        flags = distributed.broadcast(_preflight(model, x, y, device, num_classes) if checked else [])
        protocol = protocol_for(flags)
        clean, top5 = clean_pass(model, x, y, device, batch_size, progress, protocol.verdict_passes)
        clean = _resumed_clean(state, clean, protocol)
    return clean, top5, flags, protocol


def _suite_checks(engine, suite, by_attack, robust, eps_list, protocol):
    """The checks on the suite's own results: a random search beating the gradient attacks, and
    (deterministic models only: single-pass claims would mistake noise for progress) convergence
    at every eps, whose fooling points count. Returns (robust, flags, convergence record)."""
    flags = random_search_flags(suite, by_attack, len(engine.y))
    if protocol.randomized:
        return robust, flags, None
    robust, more, record = check_convergence(engine, suite, robust, eps_list)
    _check_monotone(engine.clean, robust)
    return robust, flags + more, record


def _finish(engine, state, protocol) -> list[dict]:
    """Every process's counts and results added up and saved; the bf16 overturn flag."""
    engine.overturned = sum(distributed.all_gather(engine.overturned))
    state.finish(distributed.all_gather(state.as_dict()))
    engine.counts = state.counts  # the whole evaluation's, every process's added up
    flags = _overturn_flags(engine)
    engine.counts["clean_forwards"] = len(engine.y) * protocol.verdict_passes
    return flags


def _preflight(model, x, y, device, num_classes) -> list[dict]:
    probe = torch.arange(min(len(y), 64))
    xb, yb = batch_images(x, probe, device), y[probe].to(device)
    return flag_checks(model, xb, yb) + large_eps_flag(model, xb, yb, num_classes)


def _resumed_clean(state: EvalState, clean: torch.Tensor, protocol) -> torch.Tensor:
    """Clean verdicts, checked against (deterministic) or taken from (randomized) a resumed run."""
    if state.clean_correct is not None:
        if protocol.randomized:
            clean = torch.tensor(state.clean_correct)  # the saved verdicts stand; new passes would differ
        else:
            fail_if(state.clean_correct != clean.tolist(), "determinism",
                    "clean predictions differ from the saved run being resumed; pass --restart to start over")
    state.clean_correct = clean.tolist()
    return clean


def _overturn_flags(engine) -> list[dict]:
    rec = engine.precision_record()
    if rec["overturned"] > OVERTURN_FLAG * max(1, rec["attacked"]):
        return [LOW_PRECISION.flag(f"fp32 overturned {rec['overturned']} bf16 claims of a "
                 f"fooling point, {rec['overturned'] / max(1, rec['attacked']):.1%} of the {rec['attacked']} attacked "
                 f"examples (> {OVERTURN_FLAG:.0%}); each was attacked again in fp32, but bf16 attack steps look "
                 f"weak here: re-run with --precision fp32")]
    return []


def _worst_case(by_attack: dict, eps_list) -> dict[str, torch.Tensor]:
    return {e.label: torch.stack([m[e.label] for m in by_attack.values()]).all(0) for e in eps_list}


def _escalate(engine, flags, suite, protocol, robust, eps_list, seed: int = 0, threat: str = "linf"):
    """Run the attacks the flags call for on the examples still robust; the worst case includes them.
    A remedy that does not serve the threat model is not run, and the record says so."""
    remedies, why = plan_remedies(flags, suite, protocol, threat)
    remedies = [r.reseeded(seed) for r in remedies]
    if not remedies:
        return robust, ({"why": why, "ran": [], "robust_acc_before": {k: v.float().mean().item() for k, v in robust.items()},
                         "robust_acc_after": {k: v.float().mean().item() for k, v in robust.items()}} if why else None)
    before = {k: v.float().mean().item() for k, v in robust.items()}
    first = len(engine.configs)
    extra = engine.run(remedies, eps_list, per_attack=False, start=robust)
    worst = _worst_case(extra, eps_list)
    after = {k: robust[k] & worst[k] for k in robust}
    _check_monotone(engine.clean, after)
    return after, {"why": why, "ran": engine.configs[first:], "robust_acc_before": before,
                   "robust_acc_after": {k: v.float().mean().item() for k, v in after.items()}}


def _check_monotone(clean, robust):
    prev = clean
    for label, mask in robust.items():
        fail_if(bool((mask & ~prev).any()), "robust <= clean, monotone in eps",
                f"an example is robust at {label} but not at a smaller budget")
        prev = mask
