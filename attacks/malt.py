"""MALT target choice with targeted APGD (Melamed, Yehudai and Shamir 2024, "MALT Powers Up
Adversarial Attacks", arXiv:2407.02240), for many classes.

AutoAttack's targeted stage attacks the 9 classes with the highest logits. At 2,388
fine-grained SKUs the class that is easiest to reach is often further down the logit order.
MALT ranks the ``candidates`` highest-logit classes ``t`` by their distance under a linear
approximation of the model around ``x``, for the l_inf threat model

    (z_y - z_t) / || grad_x (z_y - z_t) ||_1      (z: logits, y: the true class),

and runs APGD-T (the DLR-targeted loss of AutoAttack's reference code, ``pyautoattack``) on the
``targets`` classes with the smallest distance, nearest first, each on the examples still
unfooled. The gradients of the candidates' gaps cost one input-gradient pass each.

Where the data's attribute table names product lines, up to ``siblings`` of the true SKU's
sibling SKUs (the same brand and product type; the engine passes them, ``Attack.sibling_rows``)
join the candidates when the logit order left them out: a shelf's look-alike is the natural
target at 2,388 fine-grained SKUs. They are candidates only; any wrong class still counts.

Args (defaults):
    eps: l_inf budget.
    candidates: 100 highest-logit classes scored (all others when the model has fewer).
    siblings: 10 sibling SKUs at most added to the candidates (0: none; nothing without attributes).
    targets: 3 nearest candidates attacked.
    steps: 100 APGD iterations per target.
    seed: 0.
"""
from __future__ import annotations

import torch

from advrp2k import Advrp2kError, Attack, AttackResult, Option, autoattack_module, register_attack


def candidate_classes(logits: torch.Tensor, y: torch.Tensor, candidates: int, siblings: torch.Tensor | None = None,
                      max_siblings: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The classes MALT scores, per example: the ``candidates`` highest-logit wrong classes, then up
    to ``max_siblings`` of the example's siblings (a bool (N, classes) row each) that are not among
    them, highest logit first.

    Returns:
        (classes (N, c), valid (N, c)): padding where an example has fewer siblings is not valid.
    """
    others = logits.detach().float().clone()
    others.scatter_(1, y[:, None], float("-inf"))
    top = others.topk(max(1, min(candidates, logits.shape[1] - 1)), dim=1).indices
    valid = torch.ones_like(top, dtype=torch.bool)
    if siblings is None or max_siblings <= 0:
        return top, valid
    extra = siblings.to(logits.device).clone()
    extra.scatter_(1, y[:, None], False)
    extra.scatter_(1, top, False)
    k = min(max_siblings, int(extra.sum(1).max()))
    if k == 0:
        return top, valid
    picked = torch.where(extra, others, torch.full_like(others, float("-inf"))).topk(k, dim=1)
    return torch.cat([top, picked.indices], 1), torch.cat([valid, picked.values > float("-inf")], 1)


def linearised_distances(model, x: torch.Tensor, y: torch.Tensor, candidates: int, siblings: torch.Tensor | None = None,
                         max_siblings: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """MALT's score of each candidate wrong class (``candidate_classes``).

    Returns:
        (classes (N, c), distances (N, c)): the candidate classes and their linearised l_inf
        distance ``(z_y - z_t) / ||grad_x (z_y - z_t)||_1`` (infinite for padding). ``model``
        must be in eval mode, so each example's gradient is its own.
    """
    return _scored(model, x, y, candidates, siblings, max_siblings)[:2]


def _scored(model, x, y, candidates: int, siblings, max_siblings: int):
    """``linearised_distances``, and the clean logits they came from."""
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        logits = model(xg).float()
        classes, valid = candidate_classes(logits, y, candidates, siblings, max_siblings)
        true = logits.gather(1, y[:, None]).squeeze(1)
        distances = torch.full(classes.shape, float("inf"), device=logits.device)
        columns = [j for j in range(classes.shape[1]) if bool(valid[:, j].any())]
        for n, j in enumerate(columns):
            gap = true - logits.gather(1, classes[:, j:j + 1]).squeeze(1)
            grad, = torch.autograd.grad(gap.sum(), xg, retain_graph=n + 1 < len(columns))
            distances[:, j] = gap.detach() / grad.flatten(1).abs().sum(1).clamp_min(1e-12)
    return classes, distances.masked_fill(~valid, float("inf")), logits.detach()


def malt_targets(model, x: torch.Tensor, y: torch.Tensor, candidates: int, targets: int,
                 siblings: torch.Tensor | None = None, max_siblings: int = 0) -> torch.Tensor:
    """The ``targets`` candidate classes nearest by linearised distance, nearest first: (N, k)."""
    return _choose(model, x, y, candidates, targets, siblings, max_siblings)[0]


def _choose(model, x, y, candidates: int, targets: int, siblings, max_siblings: int):
    """The chosen targets (N, k), each one's rank in the logit order of the wrong classes (0:
    highest), and whether it came from the siblings rather than the logit order."""
    classes, distances, others = _scored(model, x, y, candidates, siblings, max_siblings)
    order = torch.argsort(distances, dim=1, stable=True)[:, :targets]
    chosen = classes.gather(1, order)
    others.scatter_(1, y[:, None], float("-inf"))
    ranks = (others[:, None, :] > others.gather(1, chosen)[:, :, None]).sum(2)
    return chosen, ranks, order >= max(1, min(candidates, others.shape[1] - 1))


@register_attack("malt")
class MALT(Attack):
    uses_siblings = True  # the engine passes each example's sibling SKUs where the data names them
    random_streams = "per batch"  # APGD's library seeds its generator once per call
    options = {
        "candidates": Option(int, 100, min=1, max=100_000, help="highest-logit classes scored by linearised distance"),
        "siblings": Option(int, 10, min=0, max=100_000,
                           help="sibling SKUs (same brand and product type in attributes.csv) added to the candidates"),
        "targets": Option(int, 3, min=1, max=1_000, help="nearest candidates attacked with APGD-T"),
        "steps": Option(int, 100, min=1, max=10_000, help="APGD iterations per target"),
        "seed": Option(int, 0, min=0, max=2**63 - 1, help="seeds the attack's random draws"),
    }

    def config_facts(self) -> dict:
        return {"target_choice": "linearised l_inf distance (z_y - z_t) / ||grad (z_y - z_t)||_1 over the "
                                 "highest-logit candidates and the true SKU's siblings", "loss": "dlr-targeted",
                "implementation": "advrp2k target choice + pyautoattack APGD-T single runs"}

    def perturb(self, model, x, y, init=None, generator=None) -> AttackResult:
        with torch.no_grad():
            n_classes = model(x[:1]).shape[1]
        if n_classes < 4:
            raise Advrp2kError(f"malt's targeted DLR loss needs at least 4 classes and this model has {n_classes}: "
                               f"evaluate with pgd or apgd_ce instead")
        chosen, ranks, from_siblings = _choose(model, x, y, self.candidates, self.targets, self.sibling_rows,
                                               self.siblings)
        x_adv, fooled = x.clone(), _fooled(model, x, y)
        apgd = _apgd_targeted_class()
        for j in range(chosen.shape[1]):
            left = (~fooled).nonzero().squeeze(1)
            if not len(left):
                break
            attack = apgd(model, n_iter=self.steps, norm="Linf", n_restarts=1, eps=self.eps.value, seed=self.seed,
                          device=x.device)
            attack.init_hyperparam(x[left])
            attack.y_target = chosen[left, j]
            torch.random.manual_seed(self.seed + j)
            _, acc, _, adv = attack.attack_single_run(x[left], y[left])
            hit = acc == 0
            x_adv[left[hit]] = adv[hit].detach()
            fooled[left[hit]] = True
        fooled = _fooled(model, x_adv, y)  # verified here, and again by the engine
        counts = {"examples": len(y), "nearest target outside the top 9 logits": int((ranks[:, 0] >= 9).sum()),
                  "fooled with the nearest target outside the top 9": int((fooled & (ranks[:, 0] >= 9)).sum()),
                  "examples with sibling candidates": int(self.sibling_rows.any(1).sum()) if self.sibling_rows is not None else 0,
                  "nearest target a sibling outside the candidates": int(from_siblings[:, 0].sum()),
                  "fooled with the nearest target a sibling": int((fooled & from_siblings[:, 0]).sum())}
        return AttackResult(x_adv, fooled, extra={"counts": counts, "targets": chosen.cpu().tolist()})


def _apgd_targeted_class():
    import importlib

    return importlib.import_module(f"{autoattack_module().__name__}.autopgd_base").APGDAttack_targeted


def _fooled(model, x, y) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) != y
