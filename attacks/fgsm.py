"""Fast gradient sign method, l_inf (Goodfellow et al. 2015, "Explaining and Harnessing
Adversarial Examples", arXiv:1412.6572).

Args (defaults):
    eps: l_inf budget in [0, 1] pixel units (required).
    step_size: eps when None (the classic single full step).
    random_start: False; True starts at a uniform point of the ball, as in Wong et al. 2020.
    loss: ``"ce"`` or ``"cw"``.
    seed: 0.

One forward at the start point, one input gradient, one forward at the end point; an example
counts as fooled if either point fools the model.
"""
from __future__ import annotations

import torch

from advrp2k import LOSSES, Attack, AttackResult, Option, project_linf, register_attack


@register_attack("fgsm")
class FGSM(Attack):
    options = {
        "step_size": Option(float, None, min=0, max=1, help="eps when unset", derive=lambda o, eps: eps.value),
        "random_start": Option(bool, False, help="start at a uniform point of the ball"),
        "loss": Option(str, "ce", choices=tuple(sorted(LOSSES)), help="cross-entropy or margin loss"),
        "seed": Option(int, 0, min=0, max=2**63 - 1, help="seeds the attack's random draws"),
    }

    def perturb(self, model, x, y, init=None, generator=None) -> AttackResult:
        eps = self.eps.value
        start = init if init is not None else (
            self.random_start_of(x, list(range(len(x))), [0] * len(x), generator) if self.random_start else x)
        xa = start.clone().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xa)
            grad, = torch.autograd.grad(LOSSES[self.loss](logits, y).sum(), xa)
        fooled_start = logits.argmax(1) != y
        stepped = project_linf(xa.detach() + self.step_size * grad.sign(), x, eps)
        with torch.no_grad():
            fooled_end = model(stepped).argmax(1) != y
        # Keep the fooling point: the end point if it fools, else the start point if that did.
        out = torch.where((fooled_start & ~fooled_end)[:, None, None, None], start, stepped)
        return AttackResult(out, fooled_start | fooled_end, forwards=2 * len(x), backwards=len(x))
