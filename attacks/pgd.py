"""Projected gradient descent, l_inf (Madry et al. 2018, "Towards Deep Learning Models
Resistant to Adversarial Attacks", arXiv:1706.06083).

Args (defaults):
    eps: l_inf budget in [0, 1] pixel units (required; e.g. ``8/255``).
    steps: 20 gradient-sign steps.
    step_size: ``2.5 * eps / steps`` when None (Madry et al.'s rule: the walk can cross the
        ball, so the attack is not limited by its step budget).
    random_start: True: start at a uniform point of the ball.
    restarts: 1; each restart attacks only examples not yet fooled.
    loss: ``"ce"`` (cross-entropy) or ``"cw"`` (margin loss).
    early_stop: True: an example leaves the batch the moment a visited point fools the model
        (evaluation). Adversarial training passes False to get the loss-maximising point.
    seed: 0.

An example counts as fooled if ANY visited point inside the ball fooled the model (the
start, every iterate and the final point), as AutoAttack counts it. Gradients are taken
with respect to the input only.
"""
from __future__ import annotations

import torch

from advrp2k._registry import register_attack
from advrp2k.attack_base import Attack, AttackResult, project_linf, random_start
from advrp2k.losses import LOSSES


@register_attack("pgd")
class PGD(Attack):
    def __init__(self, eps, steps: int = 20, step_size: float | None = None, random_start: bool = True,
                 restarts: int = 1, loss: str = "ce", early_stop: bool = True, seed: int = 0):
        super().__init__(eps, seed)
        if loss not in LOSSES:
            raise ValueError(f"unknown PGD loss {loss!r}: use one of {sorted(LOSSES)}")
        if steps < 1 or restarts < 1:
            raise ValueError("PGD needs steps >= 1 and restarts >= 1")
        self.steps, self.restarts, self.loss = int(steps), int(restarts), loss
        self.step_size = float(step_size) if step_size is not None else 2.5 * self.eps.value / self.steps
        self.random_start, self.early_stop = bool(random_start), bool(early_stop)

    def config(self) -> dict:
        return {**super().config(), "name": "pgd", "steps": self.steps, "step_size": self.step_size,
                "random_start": self.random_start, "restarts": self.restarts, "loss": self.loss}

    def perturb(self, model, x, y, init=None, generator=None) -> AttackResult:
        best, fooled = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        total = AttackResult(best, fooled)
        for restart in range(self.restarts):
            todo = (~fooled).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            start = init[todo] if (init is not None and restart == 0) else None
            res = self._run(model, x[todo], y[todo], start, generator)
            best[todo], fooled[todo] = res.x_adv, res.fooled
            total.forwards += res.forwards
            total.backwards += res.backwards
        return total

    def _run(self, model, x, y, start, generator) -> AttackResult:
        eps, loss_fn = self.eps.value, LOSSES[self.loss]
        if start is not None:
            x_adv = start.clone()
        elif self.random_start:
            x_adv = random_start(x, eps, generator)
        else:
            x_adv = x.clone()
        out, fooled = x_adv.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        active = torch.arange(len(x), device=x.device)
        forwards = backwards = 0
        for step in range(self.steps + 1):
            xa = x_adv[active].requires_grad_(step < self.steps)
            with torch.enable_grad():
                logits = model(xa)
            forwards += len(active)
            wrong = logits.argmax(1) != y[active]
            hit = active[wrong]
            fooled[hit] = True
            out[hit] = xa.detach()[wrong]
            if step == self.steps:
                out[active[~wrong]] = xa.detach()[~wrong]
                break
            grad, = torch.autograd.grad(loss_fn(logits, y[active]).sum(), xa)
            backwards += len(active)
            stepped = project_linf(xa.detach() + self.step_size * grad.sign(), x[active], eps)
            x_adv[active] = stepped
            if self.early_stop:
                active = active[~wrong]
                if active.numel() == 0:
                    break
        if not self.early_stop:
            out = x_adv
        return AttackResult(out, fooled, forwards, backwards)


@register_attack("pgd_cw")
class PGDMargin(PGD):
    """PGD on the Carlini-Wagner margin loss (same options as ``pgd``; ``loss`` defaults to ``"cw"``)."""

    def __init__(self, eps, loss: str = "cw", **kwargs):
        super().__init__(eps, loss=loss, **kwargs)

    def config(self) -> dict:
        return {**super().config(), "name": "pgd_cw"}
