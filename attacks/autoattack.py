"""APGD-CE, APGD-T and AutoAttack "standard" (Croce and Hein 2020, "Reliable evaluation of
adversarial robustness with an ensemble of diverse parameter-free attacks", arXiv:2003.01690),
from the reference code as PyPI ships it (``pyautoattack``, imported through advrp2k.core.compat).

Each serves the l_inf and the l2 threat models, with the reference code's own norm.

Traps pinned down here:
* targeted attacks use the top 9 classes (``n_target_classes=9``, fewer when the model has
  fewer than 10 classes), never all 2,387 others; torchattacks' ``n_classes`` argument means
  targets + 1, so passing 2388 there would run 2,387 targeted attacks;
* 100 iterations per APGD run, as the reference (torchattacks' AutoAttack uses 10);
* a fixed seed (RobustBench's ``benchmark()`` builds AutoAttack without one).

Args (defaults):
    apgd_ce: eps; steps 100; restarts 1; seed 0.
    apgd_t: eps; steps 100; restarts 1; n_target_classes 9; seed 0.
    autoattack: eps; version "standard" (APGD-CE, APGD-T, FAB-T, Square); apgd_steps 100 (also FAB's
        iterations); square_queries 5000; seed 0. Lower budgets are for tests only and are recorded.
"""
from __future__ import annotations

import logging

import torch

from advrp2k import Advrp2kError, Attack, AttackResult, Option, autoattack_module, register_attack

logging.getLogger("auto-attack").setLevel(logging.WARNING)


def _aa(submodule: str):
    """A submodule of whichever AutoAttack package is installed (autoattack or pyautoattack)."""
    import importlib

    return importlib.import_module(f"{autoattack_module().__name__}.{submodule}")


#: The reference code's name of each threat model's norm (the l2 attacks are the reference's own).
NORMS = {"linf": "Linf", "l2": "L2"}


def _fooled(model, x_adv, y) -> torch.Tensor:
    with torch.no_grad():
        return model(x_adv).argmax(1) != y


def _n_targets(model, x, wanted: int, attack: str = "AutoAttack") -> int:
    """Targets for the DLR-targeted loss, which reads the 4th-highest logit: at least 4 classes."""
    with torch.no_grad():
        n_classes = model(x[:1]).shape[1]
    if n_classes < 4:
        raise Advrp2kError(f"{attack}'s targeted DLR loss needs at least 4 classes and this model has {n_classes}: "
                           f"evaluate with pgd or apgd_ce instead")
    return max(1, min(wanted, n_classes - 1))


@register_attack("apgd_ce")
class APGDCE(Attack):
    threats = ("linf", "l2")  # the reference implements both norms
    random_streams = "per batch"  # the library seeds its generator once per call
    options = {
        "steps": Option(int, 100, min=1, max=10_000, help="APGD iterations"),
        "restarts": Option(int, 1, min=1, max=100, help="APGD restarts"),
        "seed": Option(int, 0, min=0, max=2**63 - 1, help="seeds the attack's random draws"),
    }

    def config_facts(self) -> dict:
        return {"implementation": "pyautoattack"}

    def perturb(self, model, x, y, init=None, generator=None) -> AttackResult:
        attack = _aa("autopgd_base").APGDAttack(model, n_iter=self.steps, norm=NORMS[self.threat.name], n_restarts=self.restarts, eps=self.eps.value,
                            seed=self.seed, loss="ce", device=x.device)
        x_adv = attack.perturb(x, y).detach()
        return AttackResult(x_adv, _fooled(model, x_adv, y))


@register_attack("apgd_t")
class APGDT(Attack):
    threats = ("linf", "l2")  # the reference implements both norms
    random_streams = "per batch"  # the library seeds its generator once per call
    options = {
        "steps": Option(int, 100, min=1, max=10_000, help="APGD iterations"),
        "restarts": Option(int, 1, min=1, max=100, help="APGD restarts"),
        "n_target_classes": Option(int, 9, min=1, max=100, help="top classes targeted"),
        "seed": Option(int, 0, min=0, max=2**63 - 1, help="seeds the attack's random draws"),
    }

    def config_facts(self) -> dict:
        return {"implementation": "pyautoattack"}

    def perturb(self, model, x, y, init=None, generator=None) -> AttackResult:
        attack = _aa("autopgd_base").APGDAttack_targeted(model, n_iter=self.steps, norm=NORMS[self.threat.name], n_restarts=self.restarts,
                                     eps=self.eps.value, seed=self.seed, device=x.device,
                                     n_target_classes=_n_targets(model, x, self.n_target_classes, "apgd_t"))
        x_adv = attack.perturb(x, y).detach()
        return AttackResult(x_adv, _fooled(model, x_adv, y))


def _set_apgd_steps(apgd, steps: int) -> None:
    """Give an APGD object ``steps`` iterations with the schedule its constructor derives from them
    (step-size checkpoints at 22 %, minimum 6 %, decrement 3 % of the iterations): setting
    ``n_iter`` alone would keep the 100-step schedule's 22/6/3, which is not the reference algorithm."""
    apgd.n_iter, apgd.n_iter_orig = steps, steps
    apgd.n_iter_2 = max(int(0.22 * steps), 1)
    apgd.n_iter_min = max(int(0.06 * steps), 1)
    apgd.size_decr = max(int(0.03 * steps), 1)


@register_attack("autoattack")
class AutoAttackStandard(Attack):
    threats = ("linf", "l2")  # the reference implements both norms
    random_streams = "per batch"  # the library seeds its generator once per call
    options = {
        "version": Option(str, "standard", choices=("standard", "rand"),
                          help="standard suite, or rand (APGD-CE and APGD-DLR with EOT 20) for randomized models"),
        "apgd_steps": Option(int, 100, min=1, max=10_000, help="APGD and FAB iterations"),
        "square_queries": Option(int, 5000, min=1, max=1_000_000, help="Square queries"),
        "seed": Option(int, 0, min=0, max=2**63 - 1, help="seeds the attack's random draws"),
    }

    @classmethod
    def randomized_options(cls, options: dict) -> dict:
        return {**options, "version": "rand"}

    def config_facts(self) -> dict:
        return {"attacks": ["apgd-ce", "apgd-t", "fab-t", "square"] if self.version == "standard"
                else ["apgd-ce", "apgd-dlr"], "n_target_classes": 9, "implementation": "pyautoattack"}

    def build(self, model, x):
        """The reference AutoAttack for this batch, with this attack's budgets."""
        aa = autoattack_module().AutoAttack(model, eps=self.eps.value, norm=NORMS[self.threat.name], version=self.version,
                                            seed=self.seed, device=x.device)
        aa.verbose = False
        targets = _n_targets(model, x, 9) if self.version == "standard" else 1  # rand runs no targeted attack
        aa.apgd_targeted.n_target_classes = targets
        aa.fab.n_target_classes = targets
        for apgd in (aa.apgd, aa.apgd_targeted):
            _set_apgd_steps(apgd, self.apgd_steps)
        aa.fab.n_iter = self.apgd_steps
        aa.square.n_queries = self.square_queries
        return aa

    def perturb(self, model, x, y, init=None, generator=None) -> AttackResult:
        x_adv, _ = self.build(model, x).run_standard_evaluation(x, y, batch_size=len(x))
        x_adv = x_adv.detach()
        return AttackResult(x_adv, _fooled(model, x_adv, y))
