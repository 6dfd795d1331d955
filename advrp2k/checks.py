"""Integrity checks on every evaluation (see docs: evaluation-integrity.md).

FAIL-level checks raise ``IntegrityError`` (no entry is written). FLAG-level checks return
``{"check", "detail"}`` records that are stored in the entry and mark it unreliable.
"""
from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from .attack_base import create_attack
from .errors import IntegrityError


def state_digest(model: nn.Module) -> str:
    """SHA-256 over parameters and buffers (BatchNorm running statistics included)."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def fail_if(condition: bool, check: str, detail: str) -> None:
    if condition:
        raise IntegrityError(f"integrity check '{check}' failed: {detail}; no leaderboard entry was written")


@torch.no_grad()
def flag_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[dict]:
    """Cheap FLAG checks on one batch of [0, 1] images (model already in eval mode)."""
    flags = []
    a, b = model(x), model(x)
    if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
        flags.append({"check": "determinism", "detail": f"two forward passes differ by {(a - b).abs().max():.3g}"})
    single = torch.cat([model(x[i:i + 1]) for i in range(min(len(x), 8))])
    if (single.argmax(1) != a[:len(single)].argmax(1)).any():
        flags.append({"check": "batch-size invariance", "detail": "predictions at batch size 1 and N disagree"})
    rows = a.sum(1)
    if (a >= 0).all() and torch.allclose(rows, torch.ones_like(rows), atol=1e-3):
        flags.append({"check": "logits, not probabilities",
                      "detail": "outputs are rows of probabilities; attacks on their cross-entropy are weakened"})
    flags += _gradient_flags(model, x, y)
    return flags


def _gradient_flags(model, x, y) -> list[dict]:
    with torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg, allow_unused=True)
    if grad is None:
        return [{"check": "usable gradients", "detail": "the output does not depend on the input through autograd"}]
    if not torch.isfinite(grad).all():
        return [{"check": "usable gradients", "detail": "input gradients contain NaN or inf"}]
    zero = (grad.flatten(1).abs().amax(1) == 0).float().mean().item()
    if zero > 0.5:
        return [{"check": "usable gradients",
                 "detail": f"input gradient is exactly zero for {zero:.0%} of examples (masked gradients)"}]
    return []


def large_eps_flag(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[dict]:
    """At eps 0.5 an honest model falls to near chance; if not, its gradients are likely masked."""
    res = create_attack("pgd", 0.5, steps=10, restarts=1, seed=123)(model, x, y)
    acc = 1 - res.fooled.float().mean().item()
    bound = max(2.0 / num_classes, 0.05)
    if acc > bound:
        return [{"check": "large-eps collapse", "detail": f"PGD at eps 0.5 leaves {acc:.1%} accuracy "
                 f"(expected <= {bound:.1%}): gradients may be masked"}]
    return []
