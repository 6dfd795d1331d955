"""The attack engine: runs each attack of a suite over the eps budgets, only on the examples
still robust, with per-batch saves, refills, fp32 re-verification and (under torchrun) sharding.

The evaluator (``advrp2k.eval.evaluator``) decides what to run; this module runs it and keeps the
per-example bookkeeping honest: every claim an attack makes is re-verified in a separate pass.
"""
from __future__ import annotations

import contextlib

import torch

from advrp2k.core import distributed
from advrp2k.core.eps import Eps
from advrp2k.plugins.attack import check_ball_and_box, frozen_eval
from advrp2k.eval.checks import CONVERGENCE_ATTACKS, fail_if, kept_for_convergence
from advrp2k.core.batches import batch_images
from advrp2k.eval.state import EvalState
from advrp2k.core.precision import autocast, fp32_verdicts


def _batches(idx: torch.Tensor, size: int):
    return idx.split(size) if idx.numel() else []


REFILL_CHUNK = 8  # batches handed at once to an attack that refills; results are saved per chunk


class Engine:
    """Runs each attack over the eps budgets, only on examples still robust, with per-batch saves."""

    def __init__(self, model, x, y, clean, device, batch_size, progress, state: EvalState, passes: int = 1,
                 precision: str = "fp32", goal: torch.Tensor | None = None, siblings: torch.Tensor | None = None):
        self.model, self.x, self.y, self.clean, self.passes = model, x, y, clean, passes
        #: (examples, classes) bool: per example the classes that count as a success (ticket
        #: switching: the true SKU's siblings); None: any wrong class.
        self.goal = goal
        #: (classes, classes) bool: each SKU's siblings in the data's attribute table, offered to
        #: attacks that use them (``Attack.uses_siblings``) as target hints; None: the data names none.
        self.siblings = siblings
        self.precision, self.overturned = precision, 0
        self.mine = distributed.owned(len(y))  # under torchrun: this process's examples
        self.device, self.batch_size, self.progress, self.state = device, batch_size, progress, state
        self.fooled_by: list = [None if c else "clean" for c in clean.tolist()]
        self.configs: list[dict] = []  # what the suite and escalation ran (the entry's "attacks")
        self.check_configs: list[dict] = []  # what the checks ran (recorded with their checks)
        self.stages = 0  # every stage's number, for unique keys in the saved state
        self.counts = state.counts  # saved with every batch, so a resumed run counts the whole evaluation
        #: eps label -> {example: point}: the checked PGD's survivors' last points (only those the
        #: convergence check may sample), which the check continues instead of starting afresh.
        self.final_points: dict[str, dict[int, torch.Tensor]] = {}

    def run(self, attacks, eps_list, per_attack: bool, start: dict | None = None, points: dict | None = None,
            check: bool = False) -> dict[str, dict[str, torch.Tensor]]:
        """Robust masks per attack and eps.

        Args:
            start: only these examples (per eps label) are attacked.
            points: per eps label, starting points for the first restart (a check continuing them).
            check: a check's run: its configs go to ``check_configs``, not the entry's attacks.
        """
        by_attack: dict[str, dict[str, torch.Tensor]] = {}
        cascade = {e.label: (start[e.label] if start else self.clean).clone() for e in eps_list}
        for spec in attacks:
            still = self.clean.clone()
            adv_points: dict[int, torch.Tensor] = {}
            masks, previous = {}, None
            keep = not check and spec.name in CONVERGENCE_ATTACKS and not self.final_points
            for eps in eps_list:
                candidates = still if per_attack else (still & cascade[eps.label])
                if previous is not None:  # survivors' points from a run that was interrupted
                    adv_points = {**self.state.load_points(previous), **adv_points}
                adv_points = {**adv_points, **(points or {}).get(eps.label, {})}
                previous = self._stage(spec, eps, candidates, still, adv_points, check)
                masks[eps.label] = still.clone()
                cascade[eps.label] &= still
                if keep:
                    self.final_points[eps.label] = self._kept_points(still & candidates, adv_points, previous)
            by_attack[spec.name if spec.name not in by_attack else f"{spec.name}#{len(by_attack)}"] = masks
        return self._merged(by_attack)

    def _kept_points(self, survivors, adv_points, key) -> dict[int, torch.Tensor]:
        """The points of this process's survivors that the convergence check may sample (a
        resumed stage's come from its saved file)."""
        kept = kept_for_convergence(survivors & self.mine).tolist()
        if any(i not in adv_points for i in kept):
            adv_points = {**self.state.load_points(key), **adv_points}
        return {i: adv_points[i] for i in kept if i in adv_points}

    def _merged(self, by_attack: dict) -> dict:
        """Under torchrun: every process's verdicts on its own examples, combined (an example not
        owned keeps its clean verdict in the other processes' masks, so AND takes the owner's)."""
        if not distributed.active():
            return by_attack
        parts = distributed.all_gather((by_attack, self.fooled_by))
        merged = {name: {k: torch.stack([p[0][name][k] for p in parts]).all(0) for k in masks}
                  for name, masks in by_attack.items()}
        world = distributed.world_size()
        self.fooled_by = [parts[i % world][1][i] for i in range(len(self.fooled_by))]
        return merged

    def _stage(self, spec, eps, candidates, still, adv_points, check: bool = False) -> str:
        attack = spec.build_for_evaluation(eps)
        (self.check_configs if check else self.configs).append(attack.config())
        key = f"{self.stages}:{spec.name}@{eps.label}"
        self.stages += 1
        done, fooled_before = self.state.stage(key)
        for i in fooled_before:
            still[i] = False
            self._fooled(i, spec.name, eps)
        todo = torch.tensor([i for i in (candidates & self.mine).nonzero().squeeze(1).tolist() if i not in done],
                            dtype=torch.long)
        bar = self.progress(total=int(todo.numel()), desc=f"{spec.name} @ {eps.label}") if self.progress else None
        chunk = self.batch_size
        if getattr(attack, "refills", False):  # it keeps a batch in flight, refilling freed slots
            attack.max_active, chunk = self.batch_size, REFILL_CHUNK * self.batch_size
        for idx in _batches(todo, chunk):
            xb, yb = batch_images(self.x, idx, self.device), self.y[idx].to(self.device)
            goal = self._goal_of(idx)
            with autocast(self.precision, self.device), counted_passes(self.model, self.counts):
                res = attack(self.model, xb, yb, init=_stack_init(adv_points, idx, xb), index=idx,
                             **_goal_kwargs(goal), **self._sibling_kwargs(attack, idx))
            check_ball_and_box(spec.name, eps, xb, res.x_adv, spec.threat)  # whatever the plugin's __call__ did
            check_regenerated(spec, eps, xb, idx, res)
            for name, value in (res.extra or {}).get("counts", {}).items():  # the attack's own tallies
                tally = f"{spec.name}@{eps.label}: {name}"
                self.counts[tally] = self.counts.get(tally, 0) + int(value)
            # fp32 decides: a bf16 claim the fp32 model does not confirm is overturned, not a failure
            strict, claimed = self.precision == "fp32", res.fooled.clone()
            preds = _reverify(self.model, res, yb, spec.name, eps, self.batch_size, self.passes, strict=strict,
                              goal=goal)
            if not strict and bool((claimed & ~res.fooled).any()):
                preds = self._reattack_in_fp32(attack, spec, eps, xb, yb, idx, adv_points, res, preds,
                                               claimed & ~res.fooled)
            preds = preds.cpu().tolist()
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
            aimed = (res.extra or {}).get("targets")  # per example: the classes a targeted attack aimed at
            targets = {i: [int(c) for c in t] for i, t in zip(idx.tolist(), aimed)} if aimed is not None else None
            self.state.record(key, idx.tolist(), fooled_now, adv_class, targets)
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        return key

    def _sibling_kwargs(self, attack, idx: torch.Tensor) -> dict:
        """``siblings=`` (the batch's rows, on the device) for an attack that uses them, when the data names any."""
        if self.siblings is None or not getattr(attack, "uses_siblings", False):
            return {}
        return {"siblings": self.siblings[self.y[idx]].to(self.device)}

    def _goal_of(self, idx: torch.Tensor) -> torch.Tensor | None:
        """The goal rows of the batch ``idx`` (on the device), or None for any wrong class."""
        return None if self.goal is None else self.goal[idx].to(self.device)

    def _reattack_in_fp32(self, attack, spec, eps, xb, yb, idx, adv_points, res, preds, rows) -> torch.Tensor:
        """bf16 claims the fp32 model rejects: those examples are attacked again with fp32 steps
        (same starts, same streams), so a bf16 artefact (an underflowed gradient, a start point
        misclassified only in bf16) never leaves an example counted robust. Returns the predictions."""
        sub = rows.nonzero().squeeze(1)
        sub_cpu = sub.cpu()
        self.overturned += len(sub)
        goal = self._goal_of(idx[sub_cpu])
        with counted_passes(self.model, self.counts):
            again = attack(self.model, xb[sub], yb[sub], init=_stack_init(adv_points, idx[sub_cpu], xb[sub]),
                           index=idx[sub_cpu], **_goal_kwargs(goal), **self._sibling_kwargs(attack, idx[sub_cpu]))
        check_ball_and_box(spec.name, eps, xb[sub], again.x_adv, spec.threat)
        sub_preds = _reverify(self.model, again, yb[sub], spec.name, eps, self.batch_size, self.passes, strict=True,
                              goal=goal)
        res.x_adv[sub], res.fooled[sub] = again.x_adv.to(res.x_adv.dtype), again.fooled
        preds = preds.clone()
        preds[sub] = sub_preds
        return preds

    def precision_record(self) -> dict:
        """Attack precision; bf16 claims fp32 overturned (each re-attacked in fp32); the number of
        examples attacked (each clean-correct example once, whatever the number of stages)."""
        return {"attacks": self.precision, "verdicts": "fp32", "overturned": self.overturned,
                "reattacked_in_fp32": self.overturned, "attacked": int(self.clean.sum())}

    def _fooled(self, i: int, name: str, eps: Eps) -> None:
        if self.fooled_by[i] is None:
            self.fooled_by[i] = f"{name}@{eps.label}"


@contextlib.contextmanager
def counted_passes(model: torch.nn.Module, counts: dict):
    """Count, into ``counts["attack_forwards"]`` and ``["attack_backwards"]``, the rows an attack
    sends forward through ``model`` and the rows whose gradient flows back through it, by hooks
    on the model: whatever the attack reports of itself (AutoAttack, Square and torchattacks
    report nothing). A backward is counted on each forward's output, so a repeated forward of one
    input (expectation over transformation) is not counted twice."""
    def forward(_module, inputs, output):
        rows = len(inputs[0]) if inputs and torch.is_tensor(inputs[0]) else 0
        counts["attack_forwards"] += rows
        if torch.is_tensor(output) and output.requires_grad:
            output.register_hook(lambda grad: counts.__setitem__("attack_backwards", counts["attack_backwards"] + rows))

    handle = model.register_forward_hook(forward)
    try:
        yield
    finally:
        handle.remove()


def check_regenerated(spec, eps, xb: torch.Tensor, idx: torch.Tensor, res) -> None:
    """Shelf conditions are not a norm ball: the attack names, per example, the transform it
    returned (``extra["choices"]``), and each is re-generated from the image and must match
    exactly. Other threat models' points are checked against their set instead.

    Raises:
        AttackContractError: a missing list of choices, or a point that is not its stated transform.
    """
    from advrp2k.core.errors import AttackContractError
    from advrp2k.core.shelf import regenerate
    from advrp2k.core.threat import threat_model

    if threat_model(spec.threat).geometry != "shelf":
        return
    choices = (res.extra or {}).get("choices")
    if not isinstance(choices, list) or len(choices) != len(idx):
        raise AttackContractError(f"{spec.name} under shelf conditions must name each point's transform "
                                  f"(extra['choices'], one per example); its result is rejected")
    again = regenerate(xb, idx.tolist(), int(eps.value), choices)
    bad = (again != res.x_adv).flatten(1).any(1)
    if bool(bad.any()):
        raise AttackContractError(f"{spec.name} returned {int(bad.sum())} points at severity {eps.label} that are not "
                                  f"the transforms it names; its result is rejected")


def _goal_kwargs(goal) -> dict:
    """``goal=`` only when there is one: a plugin whose own ``__call__`` predates goals still runs
    under an untargeted threat model."""
    return {} if goal is None else {"goal": goal}


def _stack_init(adv_points, idx, xb):
    if not adv_points or not all(i in adv_points for i in idx.tolist()):
        return None
    return torch.stack([adv_points[i] for i in idx.tolist()]).to(xb.device)


@torch.no_grad()
@fp32_verdicts()
def _reverify(model, res, y, name, eps, batch_size, passes: int = 1, strict: bool = True,
              goal: torch.Tensor | None = None) -> torch.Tensor:
    """Recompute predictions on the returned points: they must agree with the attack's claims.

    A claim is a success under the goal: any wrong class, or with ``goal`` (per example, the
    classes that count, e.g. siblings) one of those; a wrong class outside them is no success.

    With ``passes`` > 1 (a randomized model) the verdict is taken over that many passes and
    replaces the attack's claim, which came from a single pass: like is compared with like, and
    model randomness never fails the check.

    With ``strict`` False (bf16 attack steps) the fp32 verdict replaces the claim instead of
    failing the check: low-precision claims are expected to be overturned sometimes.

    Returns:
        the predicted class of each returned point (the adversarial class where fooled).
    """
    def predict() -> torch.Tensor:
        return torch.cat([model(part).argmax(1) for part in res.x_adv.split(batch_size)])

    def success(p: torch.Tensor) -> torch.Tensor:
        return p != y if goal is None else goal.gather(1, p[:, None]).squeeze(1)

    with frozen_eval(model):
        preds = predict()
        if passes > 1:
            for _ in range(passes - 1):  # the first succeeding pass names the adversarial class
                preds = torch.where(success(preds), preds, predict())
            res.fooled = success(preds)
            return preds
    wrong = success(preds)
    if not strict:
        res.fooled = wrong
        return preds
    bad = res.fooled & ~wrong
    fail_if(bool(bad.any()), "re-verification",
            f"{name} at {eps.label} claims {int(bad.sum())} examples fooled whose returned points are classified "
            f"correctly")
    # An unclaimed fooling point is a bookkeeping slip, but a harmless one: count it as fooled.
    res.fooled |= wrong
    return preds
