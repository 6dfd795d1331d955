"""Integrity checks on every evaluation (see docs: evaluation-integrity.md).

FAIL-level checks raise ``IntegrityError`` (no entry is written). FLAG-level checks return
flag records (``advrp2k.eval.flags``: an identifier, a title, the detail) that are stored in the
entry and mark it unreliable; a flag that an attack can settle also names it (``remedy``: the
attacks the evaluator then runs on the examples still robust, see ``advrp2k.eval.escalation``).
"""
from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from advrp2k.plugins.attack import create_attack
from advrp2k.core.errors import IntegrityError
from advrp2k.eval.flags import (BATCH_DEPENDENT, GRADIENTS, NO_COLLAPSE, NONDETERMINISTIC,
                                PROBABILITIES, RANDOM_SEARCH_WINS)


def state_digest(model: nn.Module) -> str:
    """SHA-256 over parameters and buffers (BatchNorm running statistics included)."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def nonfinite_tensors(state: dict) -> list[str]:
    """Names of the floating-point tensors in a state dict that hold NaN or infinity."""
    return [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]


def fail_if_nonfinite_weights(model_or_state, where: str) -> None:
    """FAIL: a model with NaN or infinite weights outputs NaN, and argmax of NaN is class 0, so
    its "accuracy" would be the share of class 0 in the data."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    bad = nonfinite_tensors(state)
    fail_if(bool(bad), "finite weights", f"{where} has NaN or infinite values in {len(bad)} tensor{'s' * (len(bad) != 1)} "
            f"({', '.join(bad[:3])}): retrain it, or evaluate an earlier checkpoint")


def fail_if(condition: bool, check: str, detail: str) -> None:
    if condition:
        raise IntegrityError(f"integrity check '{check}' failed: {detail}; no leaderboard entry was written")


@torch.no_grad()
def flag_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """Cheap FLAG checks on one batch of [0, 1] images (model already in eval mode)."""
    flags = []
    a, b = model(x), model(x)
    if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
        flags.append(NONDETERMINISTIC.flag(f"two forward passes differ by {(a - b).abs().max():.3g}"))
    single = torch.cat([model(x[i:i + 1]) for i in range(min(len(x), 8))])
    if (single.argmax(1) != a[:len(single)].argmax(1)).any():
        flags.append(BATCH_DEPENDENT.flag("predictions at batch size 1 and N disagree"))
    rows = a.sum(1)
    if (a >= 0).all() and torch.allclose(rows, torch.ones_like(rows), atol=1e-3):
        flags.append(PROBABILITIES.flag("outputs are rows of probabilities; attacks on their cross-entropy are weakened"))
    flags += _gradient_flags(model, x, y)
    return flags


def _gradient_flags(model, x, y) -> list[dict]:
    with torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg, allow_unused=True)
    if grad is None:
        return [GRADIENTS.flag("the output does not depend on the input through autograd")]
    if not torch.isfinite(grad).all():
        return [GRADIENTS.flag("input gradients contain NaN or inf")]
    zero = (grad.flatten(1).abs().amax(1) == 0).float().mean().item()
    if zero > 0.5:
        return [GRADIENTS.flag(f"input gradient is exactly zero for {zero:.0%} of examples (masked gradients or "
                               f"saturated logits)")]
    return []


def large_eps_flag(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[dict]:
    """At eps 0.5 an honest model falls to near chance; if not, its gradients are likely masked."""
    res = create_attack("pgd", 0.5, steps=10, restarts=1, seed=123)(model, x, y)
    acc = 1 - res.fooled.float().mean().item()
    bound = max(2.0 / num_classes, 0.05)
    if acc > bound:
        return [NO_COLLAPSE.flag(f"PGD at eps 0.5 leaves {acc:.1%} accuracy (expected <= {bound:.1%}): "
                                 f"gradients may be masked")]
    return []


def random_search_flags(attacks, by_attack: dict, n: int) -> list[dict]:
    """A gradient-free search must not fool clearly more examples than the gradient attacks."""
    from advrp2k.plugins.registry import ATTACKS

    kinds = [getattr(ATTACKS.get(spec.name), "gradient_free", False) for spec in attacks]
    if all(kinds) or not any(kinds):
        return []
    masks = list(by_attack.values())
    flags = []
    for label in masks[0]:
        white = torch.stack([m[label] for m, free in zip(masks, kinds) if not free]).all(0)
        black = torch.stack([m[label] for m, free in zip(masks, kinds) if free]).all(0)
        extra = int((white & ~black).sum())
        if extra > max(2, 0.01 * n):
            flags.append(RANDOM_SEARCH_WINS.flag(f"at {label} a gradient-free search fooled {extra} examples that every "
                                                 f"gradient attack missed: gradients may be masked"))
    return flags


#: Survivors re-attacked by the convergence check at each eps: a fixed random sample of this size
#: (all when fewer).
CONVERGENCE_SAMPLE = 100
#: The engine keeps the final points of this many times the sample (per process, per eps): the
#: sample is drawn from the worst case over the whole suite, which may pass over a few of them.
CONVERGENCE_KEEP = 4
#: The attacks whose convergence is checked (the first of them in the suite).
CONVERGENCE_ATTACKS = ("pgd", "pgd_cw")


def convergence_sample(survivors: torch.Tensor, size: int = CONVERGENCE_SAMPLE) -> torch.Tensor:
    """The indices of the ``size`` survivors (a bool mask over the test set) that come first in a
    fixed random order of the whole test set, ascending: the same examples however the
    survivors were computed or sharded, so a process can keep the points the sample will need."""
    order = torch.randperm(len(survivors), generator=torch.Generator().manual_seed(0))
    picked = order[survivors[order]][:size]
    return picked.sort().values


def kept_for_convergence(survivors: torch.Tensor) -> torch.Tensor:
    """The survivors whose final points the engine keeps for the convergence check."""
    return convergence_sample(survivors, CONVERGENCE_KEEP * CONVERGENCE_SAMPLE)
