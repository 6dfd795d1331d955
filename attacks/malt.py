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

Args (defaults):
    eps: l_inf budget.
    candidates: 100 highest-logit classes scored (all others when the model has fewer).
    targets: 3 nearest candidates attacked.
    steps: 100 APGD iterations per target.
    seed: 0.

Sibling SKUs from ``attributes.csv`` are not added to the candidates: an attack sees the model
and the batch, not the data's tables.
"""
from __future__ import annotations

import torch

from advrp2k import Advrp2kError, Attack, AttackResult, Option, autoattack_module, register_attack


def linearised_distances(model, x: torch.Tensor, y: torch.Tensor, candidates: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MALT's score of each of the ``candidates`` highest-logit wrong classes.

    Returns:
        (classes (N, c), distances (N, c)): the candidate classes in logit order and their
        linearised l_inf distance ``(z_y - z_t) / ||grad_x (z_y - z_t)||_1``. ``model`` must be
        in eval mode, so each example's gradient is its own.
    """
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        logits = model(xg).float()
        n_cand = max(1, min(candidates, logits.shape[1] - 1))
        others = logits.detach().clone()
        others.scatter_(1, y[:, None], float("-inf"))
        classes = others.topk(n_cand, dim=1).indices
        true = logits.gather(1, y[:, None]).squeeze(1)
        distances = []
        for j in range(n_cand):
            gap = true - logits.gather(1, classes[:, j:j + 1]).squeeze(1)
            grad, = torch.autograd.grad(gap.sum(), xg, retain_graph=j + 1 < n_cand)
            distances.append(gap.detach() / grad.flatten(1).abs().sum(1).clamp_min(1e-12))
    return classes, torch.stack(distances, 1)


def malt_targets(model, x: torch.Tensor, y: torch.Tensor, candidates: int, targets: int) -> torch.Tensor:
    """The ``targets`` candidate classes nearest by linearised distance, nearest first: (N, k)."""
    return _targets_and_ranks(model, x, y, candidates, targets)[0]


def _targets_and_ranks(model, x, y, candidates: int, targets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The chosen targets (N, k) and each one's rank in the logit order of the wrong classes (0: highest)."""
    classes, distances = linearised_distances(model, x, y, candidates)
    order = torch.argsort(distances, dim=1, stable=True)[:, :targets]
    return classes.gather(1, order), order


@register_attack("malt")
class MALT(Attack):
    random_streams = "per batch"  # APGD's library seeds its generator once per call
    options = {
        "candidates": Option(int, 100, min=1, max=100_000, help="highest-logit classes scored by linearised distance"),
        "targets": Option(int, 3, min=1, max=1_000, help="nearest candidates attacked with APGD-T"),
        "steps": Option(int, 100, min=1, max=10_000, help="APGD iterations per target"),
        "seed": Option(int, 0, min=0, max=2**63 - 1, help="seeds the attack's random draws"),
    }

    def config_facts(self) -> dict:
        return {"target_choice": "linearised l_inf distance (z_y - z_t) / ||grad (z_y - z_t)||_1 over the "
                                 "highest-logit candidates", "loss": "dlr-targeted",
                "implementation": "advrp2k target choice + pyautoattack APGD-T single runs"}

    def perturb(self, model, x, y, init=None, generator=None) -> AttackResult:
        with torch.no_grad():
            n_classes = model(x[:1]).shape[1]
        if n_classes < 4:
            raise Advrp2kError(f"malt's targeted DLR loss needs at least 4 classes and this model has {n_classes}: "
                               f"evaluate with pgd or apgd_ce instead")
        chosen, ranks = _targets_and_ranks(model, x, y, self.candidates, self.targets)
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
                  "fooled with the nearest target outside the top 9": int((fooled & (ranks[:, 0] >= 9)).sum())}
        return AttackResult(x_adv, fooled, extra={"counts": counts, "targets": chosen.cpu().tolist()})


def _apgd_targeted_class():
    import importlib

    return importlib.import_module(f"{autoattack_module().__name__}.autopgd_base").APGDAttack_targeted


def _fooled(model, x, y) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) != y
