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

from ._eps import Eps
from .attack_base import create_attack, frozen_eval
from .checks import convergence_flags, fail_if, flag_checks, large_eps_flag, random_search_flags, state_digest
from .data.rp2k import batch_images
from .eval_state import EvalState

log = logging.getLogger(__name__)


@dataclass
class AttackSpec:
    """One attack of the suite: a registered name and its options (eps is set per run)."""

    name: str
    options: dict = field(default_factory=dict)

    def build(self, eps: Eps):
        return create_attack(self.name, eps, **self.options)


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


def _batches(idx: torch.Tensor, size: int):
    return idx.split(size) if idx.numel() else []


@torch.no_grad()
def clean_pass(model, x, y, device, batch_size, progress=None):
    top1, top5 = torch.zeros(len(y), dtype=torch.bool), torch.zeros(len(y), dtype=torch.bool)
    batches = _batches(torch.arange(len(y)), batch_size)
    for idx in (progress(batches, desc="clean") if progress else batches):
        logits = model(batch_images(x, idx, device)).cpu()
        k = min(5, logits.shape[1])
        top1[idx] = logits.argmax(1) == y[idx]
        top5[idx] = (logits.topk(k, 1).indices == y[idx, None]).any(1)
    return top1, top5


def evaluate(model: nn.Module, x, y: torch.Tensor, attacks: list[AttackSpec], eps_list: list[Eps],
             device: torch.device, batch_size: int = 256, progress: Callable | None = None,
             num_classes: int | None = None, sanity_checks: bool = True, state: EvalState | None = None,
             per_attack: bool = True) -> EvalResult:
    """Evaluate ``model`` on images ``x`` (uint8 or [0, 1] float, on the CPU) and labels ``y``.

    Args:
        state: per-example results to resume from and save to after every batch.
        per_attack: run each attack on every clean-correct example (standalone numbers per
            attack, worst case over all of them); False cascades, each attack only seeing the
            survivors of the previous ones (cheaper; worst case only).

    Raises:
        IntegrityError: a FAIL-level check failed (ball, box, re-verification, eval mode...).
    """
    start = time.perf_counter()
    model.to(device)
    num_classes = num_classes or int(y.max()) + 1
    state = state or EvalState(None, {})
    digest = state_digest(model)
    with frozen_eval(model):  # a model handed over in train mode is evaluated in eval mode
        clean, top5 = clean_pass(model, x, y, device, batch_size, progress)
        if state.clean_correct is not None:
            fail_if(state.clean_correct != clean.tolist(), "determinism",
                    "clean predictions differ from the saved run being resumed; pass --restart to start over")
        state.clean_correct = clean.tolist()
        flags = []
        if sanity_checks and len(y):
            probe = torch.arange(min(len(y), 64))
            xb, yb = batch_images(x, probe, device), y[probe].to(device)
            flags = flag_checks(model, xb, yb) + large_eps_flag(model, xb, yb, num_classes)
    engine = _Engine(model, x, y, clean, device, batch_size, progress, state)
    by_attack = engine.run(attacks, sorted(eps_list), per_attack)
    robust = {e.label: torch.stack([m[e.label] for m in by_attack.values()]).all(0) for e in sorted(eps_list)}
    _check_monotone(clean, robust)
    if sanity_checks:
        flags += random_search_flags(attacks, by_attack, len(y))
        flags += convergence_flags(model, x, y, attacks, robust, sorted(eps_list), device, batch_size)
    fail_if(state_digest(model) != digest, "eval mode",
            "the model's weights or BatchNorm statistics changed during evaluation")
    state.save(complete=True)
    engine.counts["clean_forwards"] = len(y)
    per = {name: {k: v.float().mean().item() for k, v in masks.items()} for name, masks in by_attack.items()} \
        if per_attack else {}
    return EvalResult(y.clone(), clean, top5, robust, engine.fooled_by, engine.configs, flags, engine.counts,
                      time.perf_counter() - start, per)


REFILL_CHUNK = 8  # batches handed at once to an attack that refills; results are saved per chunk


class _Engine:
    """Runs each attack over the eps budgets, only on examples still robust, with per-batch saves."""

    def __init__(self, model, x, y, clean, device, batch_size, progress, state: EvalState):
        self.model, self.x, self.y, self.clean = model, x, y, clean
        self.device, self.batch_size, self.progress, self.state = device, batch_size, progress, state
        self.fooled_by: list = [None if c else "clean" for c in clean.tolist()]
        self.configs: list[dict] = []
        self.counts = state.counts  # saved with every batch, so a resumed run counts the whole evaluation

    def run(self, attacks, eps_list, per_attack: bool) -> dict[str, dict[str, torch.Tensor]]:
        by_attack: dict[str, dict[str, torch.Tensor]] = {}
        cascade = {e.label: self.clean.clone() for e in eps_list}
        for spec in attacks:
            still = self.clean.clone()
            adv_points: dict[int, torch.Tensor] = {}
            masks, previous = {}, None
            for eps in eps_list:
                candidates = still if per_attack else (still & cascade[eps.label])
                if previous is not None:  # survivors' points from a run that was interrupted
                    adv_points = {**self.state.load_points(previous), **adv_points}
                previous = self._stage(spec, eps, candidates, still, adv_points)
                masks[eps.label] = still.clone()
                cascade[eps.label] &= still
            by_attack[spec.name if spec.name not in by_attack else f"{spec.name}#{len(by_attack)}"] = masks
        return by_attack

    def _stage(self, spec, eps, candidates, still, adv_points) -> str:
        attack = spec.build(eps)
        self.configs.append(attack.config())
        key = f"{len(self.configs) - 1}:{spec.name}@{eps.label}"
        done, fooled_before = self.state.stage(key)
        for i in fooled_before:
            still[i] = False
            self._fooled(i, spec.name, eps)
        todo = torch.tensor([i for i in candidates.nonzero().squeeze(1).tolist() if i not in done], dtype=torch.long)
        bar = self.progress(total=int(todo.numel()), desc=f"{spec.name} @ {eps.label}") if self.progress else None
        chunk = self.batch_size
        if getattr(attack, "refills", False):  # it keeps a batch in flight, refilling freed slots
            attack.max_active, chunk = self.batch_size, REFILL_CHUNK * self.batch_size
        for idx in _batches(todo, chunk):
            xb, yb = batch_images(self.x, idx, self.device), self.y[idx].to(self.device)
            res = attack(self.model, xb, yb, init=_stack_init(adv_points, idx, xb))
            preds = _reverify(self.model, res, yb, spec.name, eps, self.batch_size).cpu().tolist()
            self.counts["attack_forwards"] += res.forwards
            self.counts["attack_backwards"] += res.backwards
            self.counts["attacked_examples"] += len(idx)
            fooled_now, adv_class, kept = [], [], []
            for i, f, xa, pred in zip(idx.tolist(), res.fooled.cpu().tolist(), res.x_adv.cpu(), preds):
                if f:
                    still[i] = False
                    self._fooled(i, spec.name, eps)
                    adv_points.pop(i, None)
                    fooled_now.append(i)
                    adv_class.append(pred)
                else:
                    adv_points[i] = xa
                    kept.append(i)
            if kept:
                self.state.save_points(key, kept, torch.stack([adv_points[i] for i in kept]))
            self.state.record(key, idx.tolist(), fooled_now, adv_class)
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        return key

    def _fooled(self, i: int, name: str, eps: Eps) -> None:
        if self.fooled_by[i] is None:
            self.fooled_by[i] = f"{name}@{eps.label}"


def _stack_init(adv_points, idx, xb):
    if not adv_points or not all(i in adv_points for i in idx.tolist()):
        return None
    return torch.stack([adv_points[i] for i in idx.tolist()]).to(xb.device)


@torch.no_grad()
def _reverify(model, res, y, name, eps, batch_size) -> torch.Tensor:
    """Recompute predictions on the returned points: they must agree with the attack's claims.

    Returns:
        the predicted class of each returned point (the adversarial class where fooled).
    """
    with frozen_eval(model):
        preds = torch.cat([model(part).argmax(1) for part in res.x_adv.split(batch_size)])
    wrong = preds != y
    bad = res.fooled & ~wrong
    fail_if(bool(bad.any()), "re-verification",
            f"{name} at {eps.label} claims {int(bad.sum())} examples fooled whose returned points are classified "
            f"correctly")
    # An unclaimed fooling point is a bookkeeping slip, but a harmless one: count it as fooled.
    res.fooled |= wrong
    return preds


def _check_monotone(clean, robust):
    prev = clean
    for label, mask in robust.items():
        fail_if(bool((mask & ~prev).any()), "robust <= clean, monotone in eps",
                f"an example is robust at {label} but not at a smaller budget")
        prev = mask
