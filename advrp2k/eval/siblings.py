"""Ticket switching's goal: per test image, the sibling SKUs an attack must make the model read.

Siblings are the other SKUs of the same product line: the same ``brand`` and ``product_type`` in
the attribute table (``attributes.csv``). A SKU without both attributes, or without another SKU
sharing them, falls back to the ``FALLBACK_K`` classes nearest in the model's own clean logits
(the classes it ranks next, averaged over that SKU's test images): a documented fallback that the
entry records per SKU count, never silently.

Pack size (``size`` such as ``250ml``, ``1L``, ``500g``) gives a proxy for a cheaper item: a
switch to a sibling of a smaller pack. It is a proxy, and is reported as one.
"""
from __future__ import annotations

import torch

from advrp2k.core.batches import batch_images
from advrp2k.core.packs import pack_amount
from advrp2k.plugins.attack import frozen_eval

#: Sibling classes per SKU when its attributes do not name a product line.
FALLBACK_K = 5
LINE_KEYS = ("brand", "product_type")


class SiblingGoal:
    """The ticket-switching goal over ``classes``, from their ``attributes``.

    ``rows(model, x, y, device, batch_size)`` gives, per example, a bool row over the classes: True
    for the true SKU's siblings. ``record()`` says how they were defined (for the entry).
    """

    def __init__(self, classes: list[str], attributes: dict[str, dict[str, str]], k: int = FALLBACK_K):
        self.classes, self.k = list(classes), k
        self.table = torch.zeros(len(classes), len(classes), dtype=torch.bool)
        lines: dict[tuple, list[int]] = {}
        for c, name in enumerate(self.classes):
            key = line_of(attributes.get(name, {}))
            if key is not None:
                lines.setdefault(key, []).append(c)
        for members in lines.values():
            for c in members:
                self.table[c, [m for m in members if m != c]] = True
        self.fallback = [c for c in range(len(classes)) if not self.table[c].any()]
        self.smaller = _smaller_packs(self.classes, attributes, self.table)

    def rows(self, model, x, y: torch.Tensor, device, batch_size: int) -> torch.Tensor:
        """(examples, classes) bool: the siblings of each example's true class (the fallback
        classes' from the model's mean clean logits over their test images)."""
        table = self.table.clone()
        wanted = [c for c in self.fallback if bool((y == c).any())]
        if wanted:
            mean = _mean_logits(model, x, y, wanted, device, batch_size)
            for c in wanted:
                scores = mean[c].clone()
                scores[c] = float("-inf")
                table[c, scores.topk(min(self.k, len(self.classes) - 1)).indices] = True
        return table[y]

    def record(self) -> dict:
        """How siblings were defined, as the entry states it."""
        with_line = len(self.classes) - len(self.fallback)
        sizes = self.table.sum(1)
        return {"definition": f"same {' and '.join(LINE_KEYS)} in the attribute table",
                "fallback": f"the {self.k} classes nearest in the model's mean clean logits, for SKUs without a "
                            f"product line of two or more",
                "skus_with_line": with_line, "skus_with_fallback": len(self.fallback),
                "median_siblings": int(sizes[sizes > 0].median()) if bool((sizes > 0).any()) else 0,
                "smaller_pack_proxy": "a sibling whose size attribute is smaller (a proxy for a cheaper item)"}


def sibling_table(classes: list[str], attributes: dict[str, dict[str, str]]) -> torch.Tensor | None:
    """(classes, classes) bool: each SKU's siblings by the attribute table alone (no fallback),
    or None when no two SKUs share a product line."""
    table = SiblingGoal(classes, attributes).table
    return table if bool(table.any()) else None


def line_of(attrs: dict[str, str]) -> tuple | None:
    """A SKU's product line (brand, product type), or None when an attribute is missing."""
    key = tuple(str(attrs.get(k, "")).strip() for k in LINE_KEYS)
    return key if all(key) else None


def _smaller_packs(classes, attributes, table) -> torch.Tensor:
    """(classes, classes) bool: sibling j of class c has a smaller pack than c."""
    amounts = [pack_amount(attributes.get(name, {}).get("size", "")) for name in classes]
    out = torch.zeros_like(table)
    for c, a in enumerate(amounts):
        if a is None:
            continue
        for j in table[c].nonzero().squeeze(1).tolist():
            if amounts[j] is not None and amounts[j] < a:
                out[c, j] = True
    return out


@torch.no_grad()
def _mean_logits(model, x, y, wanted: list[int], device, batch_size: int) -> torch.Tensor:
    """Mean clean logits over the test images of each class in ``wanted`` (rows of other classes: 0)."""
    rows = torch.tensor([i for i, c in enumerate(y.tolist()) if c in set(wanted)], dtype=torch.long)
    sums = counts = None
    with frozen_eval(model):
        for idx in rows.split(batch_size):
            logits = model(batch_images(x, idx, device)).float().cpu()
            if sums is None:
                sums, counts = torch.zeros(logits.shape[1], logits.shape[1]), torch.zeros(logits.shape[1])
            sums.index_add_(0, y[idx], logits)
            counts.index_add_(0, y[idx], torch.ones(len(idx)))
    return sums / counts.clamp_min(1)[:, None]
