"""Square Attack, l_inf or l2 (Andriushchenko et al. 2020, arXiv:1912.00049): a gradient-free random
search, from the reference code (``pyautoattack``). Used as the white-box sanity check: a
gradient-free search must not beat the gradient attacks by more than noise.

Args (defaults):
    eps: l_inf budget (required).
    queries: 1000 (AutoAttack's full run uses 5000).
    p_init: 0.8.
    seed: 0.
"""
from __future__ import annotations

import torch

from advrp2k import Attack, AttackResult, Option, autoattack_module, register_attack


@register_attack("square")
class Square(Attack):
    threats = ("linf", "l2")  # the reference implements both norms
    random_streams = "per batch"  # the library seeds its generator once per call
    gradient_free = True
    options = {
        "queries": Option(int, 1000, min=1, max=1_000_000, help="random-search queries"),
        "p_init": Option(float, 0.8, min=0, max=1, help="initial fraction of pixels changed"),
        "seed": Option(int, 0, min=0, max=2**63 - 1, help="seeds the attack's random draws"),
    }

    def config_facts(self) -> dict:
        return {"implementation": "pyautoattack"}

    def perturb(self, model, x, y, init=None, generator=None) -> AttackResult:
        import importlib

        square = importlib.import_module(f"{autoattack_module().__name__}.square")
        attack = square.SquareAttack(model, p_init=self.p_init, n_queries=self.queries, eps=self.eps.value, norm={"linf": "Linf", "l2": "L2"}[self.threat.name],
                              n_restarts=1, seed=self.seed, verbose=False, device=x.device, resc_schedule=False)
        x_adv = attack.perturb(x, y).detach()
        with torch.no_grad():
            fooled = model(x_adv).argmax(1) != y
        return AttackResult(x_adv, fooled)
