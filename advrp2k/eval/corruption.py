"""Accuracy under each shelf corruption (``advrp2k.core.shelf``) at each severity: the shelf
threat model's average case, beside the engine's worst case over corruptions and grid.

Corruption accuracy counts every test image the model classifies correctly once corrupted
(Hendrycks and Dietterich's protocol, on the fly from the test images with fixed seeds: no
download, identical everywhere). The worst case over the same corruptions (and the grid) per
image can never be above it, and ``check_worst_below_mean`` fails the evaluation if it is.
"""
from __future__ import annotations

import torch

from advrp2k.analysis.stats import bootstrap_mean
from advrp2k.core.batches import batch_images
from advrp2k.core.precision import fp32_verdicts
from advrp2k.core.shelf import CORRUPTIONS, corrupt
from advrp2k.eval.checks import fail_if
from advrp2k.plugins.attack import frozen_eval


@torch.no_grad()
@fp32_verdicts()
def corruption_accuracy(model, x, y: torch.Tensor, severities, device, batch_size: int,
                        progress=None) -> dict:
    """``{"per_corruption": {name: {severity: acc}}, "mean": {severity: acc}, "mean_ci95":
    {severity: [low, high]}, "n": images}``: the accuracy of ``model`` on every test image under
    each corruption at each severity (labels as in the entry: ``"1"`` to ``"5"``), its mean over
    the corruptions, and that mean's 95 % bootstrap interval over images (each image scored by
    the share of corruptions it survives; seeded, so identical everywhere)."""
    per = {name: {} for name in CORRUPTIONS}
    survived = {str(int(s)): torch.zeros(len(y)) for s in severities}  # per image: corruptions survived
    batches = torch.arange(len(y)).split(batch_size)
    bar = progress(total=len(CORRUPTIONS) * len(severities), desc="corruptions") if progress else None
    with frozen_eval(model):
        for name in CORRUPTIONS:
            for severity in severities:
                right = 0
                for idx in batches:
                    xb = batch_images(x, idx, device)
                    hit = model(corrupt(xb, idx.tolist(), name, int(severity))).argmax(1).cpu() == y[idx]
                    right += int(hit.sum())
                    survived[str(int(severity))][idx] += hit.float()
                per[name][str(int(severity))] = right / max(1, len(y))
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    mean = {str(int(s)): sum(per[n][str(int(s))] for n in per) / len(per) for s in severities}
    ci = {label: list(bootstrap_mean((hits / len(per)).numpy())[1:]) for label, hits in survived.items()}
    return {"per_corruption": per, "mean": mean, "mean_ci95": ci, "n": len(y), "corruptions": list(CORRUPTIONS),
            "protocol": "every test image, each corruption generated on the fly with fixed per-image seeds "
                        "(advrp2k.core.shelf), rounded to 8-bit levels"}


def check_worst_below_mean(robust_acc: dict[str, float], corruption: dict) -> None:
    """FAIL if the worst case at a severity is above the mean corruption accuracy there: the worst
    case includes every corruption at that severity, so it can only be lower."""
    for label, worst in robust_acc.items():
        mean = corruption["mean"].get(label)
        fail_if(mean is not None and worst > mean + 1e-9, "shelf worst case <= mean corruption accuracy",
                f"at severity {label} the worst case is {worst:.4%} but the mean corruption accuracy {mean:.4%}")
