"""The worst case of shelf conditions per image (``--threat shelf``): every corruption of
``advrp2k.core.shelf`` at the budget's severity, then every point of its photometric and geometric
grid (brightness, contrast, hue, rotation; Engstrom et al. 2019, arXiv:1712.02779), in a fixed
order; an image counts as fooled at the first candidate that fools the model.

Args (defaults):
    eps: the severity, 1 to 5 (the budget of the shelf threat model).
    corruptions: True: the corruptions are candidates.
    grid: True: the grid's 80 points are candidates.

The attack returns, per example, the candidate it chose (``extra["choices"]``; -1: none fooled,
the image itself), and the engine re-generates each one and compares it exactly: no point that
is not a stated transform of its image is ever counted.
"""
from __future__ import annotations

import torch

from advrp2k import Attack, AttackResult, Option, register_attack, shelf_candidates, shelf_apply


@register_attack("shelf_grid")
class ShelfGrid(Attack):
    threats = ("shelf",)
    gradient_free = True
    random_streams = "per example"  # the corruptions' draws: (corruption, example index, severity)
    options = {
        "corruptions": Option(bool, True, help="every corruption at the severity is a candidate"),
        "grid": Option(bool, True, help="every point of the brightness/contrast/hue/rotation grid is a candidate"),
    }

    def chosen_candidates(self) -> list[int]:
        names = shelf_candidates()
        return [k for k, name in enumerate(names) if (self.grid if name.startswith("grid") else self.corruptions)]

    def config_facts(self) -> dict:
        return {"candidates": len(self.chosen_candidates()), "severity": int(self.eps.value)}

    def perturb(self, model, x, y, init=None, generator=None) -> AttackResult:
        index = self.example_index or list(range(len(x)))
        severity = int(self.eps.value)
        out, fooled = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        choices = [-1] * len(x)
        forwards = 0
        for candidate in self.chosen_candidates():
            rows = (~fooled).nonzero().squeeze(1)
            if not len(rows):
                break
            point = shelf_apply(x[rows], [index[r] for r in rows.tolist()], severity, candidate)
            with torch.no_grad():
                success = self.reached(model(point), y[rows], rows)
            forwards += len(rows)
            hit = rows[success]
            out[hit], fooled[hit] = point[success], True
            for r in hit.tolist():
                choices[r] = candidate
        return AttackResult(out, fooled, forwards, 0, extra={"choices": choices})
