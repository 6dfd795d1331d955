"""The threat models' perturbation sets on tensors: distances, projection, steepest steps, random
starts and the check every returned point passes (``advrp2k.core.threat`` names the sets; this
module computes with them, so attacks and the engine share one definition of each).
"""
from __future__ import annotations

import math

import torch

from advrp2k.core.eps import Eps
from advrp2k.core.errors import AttackContractError
from advrp2k.core.threat import ThreatModel

#: Slack of the float64 set checks (an l_inf or l2 distance, a patch area).
TOLERANCE = 1e-6


def distances(threat: ThreatModel, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Per example, in float64, what the budget bounds: the l_inf or l2 distance, or the share of
    the image area covered by the bounding box of the pixels that changed (patch)."""
    delta = x_adv.double() - x.double()
    if not len(x):
        return torch.zeros(0, dtype=torch.float64)
    if threat.geometry == "linf":
        return delta.flatten(1).abs().amax(1)
    if threat.geometry == "l2":
        return delta.flatten(1).norm(dim=1)
    if threat.geometry == "patch":
        return changed_box_area(delta != 0)
    raise ValueError(f"{threat.name} has no distance")


def patch_side(area: float, h: int, w: int) -> int:
    """The side in pixels of the square patch of ``area`` (a share of the image): the largest
    whose area does not exceed it (at least one pixel)."""
    return max(1, min(h, w, math.floor(math.sqrt(area * h * w) + 1e-9)))


def changed_box_area(changed: torch.Tensor) -> torch.Tensor:
    """Per example, the area of the bounding box of the changed pixels (any channel) as a share
    of the image (0 when nothing changed)."""
    pixels = changed.any(1)  # (N, H, W)
    h, w = pixels.shape[1:]
    rows, cols = pixels.any(2), pixels.any(1)
    out = torch.zeros(len(pixels), dtype=torch.float64)
    for k in range(len(pixels)):
        r, c = rows[k].nonzero().squeeze(1), cols[k].nonzero().squeeze(1)
        if len(r):
            out[k] = (int(r[-1] - r[0]) + 1) * (int(c[-1] - c[0]) + 1) / (h * w)
    return out


def check_point(threat: ThreatModel, name: str, eps: Eps, x: torch.Tensor, x_adv: torch.Tensor) -> None:
    """FAIL unless ``x_adv`` has ``x``'s shape, is finite, in [0, 1] and inside the threat model's
    set at ``eps`` (float64). Shelf transforms are not norm-bounded: the engine re-generates them
    instead (``advrp2k.eval.engine``).

    Raises:
        AttackContractError: naming the attack and what it returned.
    """
    if x_adv.shape != x.shape:
        raise AttackContractError(f"{name} returned shape {tuple(x_adv.shape)} for inputs {tuple(x.shape)}")
    check_images(x_adv, f"{name} output")
    if threat.geometry == "shelf" or not x.numel():
        return
    worst = float(distances(threat, x, x_adv).max())
    if worst > eps.value + TOLERANCE:
        what = {"linf": "max |x_adv - x|", "l2": "||x_adv - x||_2",
                "patch": "the changed pixels' bounding box covers"}[threat.geometry]
        where = {"linf": "eps-ball", "l2": "l2 ball", "patch": "patch budget"}[threat.geometry]
        raise AttackContractError(f"{name} stepped outside the {where}: {what} = {worst:.6g} "
                                  f"> budget {eps.label} = {eps.value:.6g}; its result is rejected")


def check_images(x: torch.Tensor, what: str) -> None:
    """FAIL unless ``x`` is finite and in [0, 1] (un-normalised pixels)."""
    if not torch.isfinite(x).all():
        raise AttackContractError(f"{what} has NaN or infinite values")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise AttackContractError(f"{what} is outside [0, 1] (min {x.min():.3g}, max {x.max():.3g}): images "
                                  f"must be un-normalised pixels; the model normalises inside itself")


def project(threat: ThreatModel, x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Nearest point of the ball (l_inf; l2: radial scaling, then the box, which only shortens it)
    around ``x`` intersected with the [0, 1] box."""
    if threat.geometry == "l2":
        delta = x_adv - x
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        scale = (eps / norms).clamp(max=1.0).view(-1, *([1] * (x.dim() - 1)))
        return (x + delta * scale).clamp(0, 1)
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0, 1)


def steepest_step(threat: ThreatModel, grad: torch.Tensor, step_size: float) -> torch.Tensor:
    """The step of length ``step_size`` that increases the loss most to first order: the gradient's
    sign (l_inf) or its direction (l2)."""
    if threat.geometry == "l2":
        norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
        return step_size * grad / norms
    return step_size * grad.sign()


def start_from_uniform(threat: ThreatModel, x: torch.Tensor, noise: torch.Tensor, eps: float) -> torch.Tensor:
    """A random start from uniform [0, 1) ``noise`` of ``x``'s shape: a uniform point of the l_inf
    ball, or for l2 a point at radius ``eps`` in a direction drawn from a Gaussian (the noise's
    inverse normal transform), both then clipped to the box."""
    if threat.geometry == "l2":
        gauss = torch.erfinv((2 * noise - 1).clamp(-1 + 1e-7, 1 - 1e-7)) * math.sqrt(2)
        norms = gauss.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
        return project(threat, x + eps * gauss / norms, x, eps)
    return project(threat, x + (2 * noise - 1) * eps, x, eps)
