"""The batch contract shared by the trainer, the evaluator and the checks: a split is anything
indexable that yields uint8 ``(N, 3, S, S)`` (or float [0, 1]) rows; a batch on the device is
float32 in [0, 1]."""
from __future__ import annotations

import torch


def to_device_float(rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (or float) rows as float32 [0, 1] on ``device`` (non-blocking from pinned memory)."""
    rows = rows.to(device, non_blocking=rows.is_pinned())
    return rows.float().div_(255) if rows.dtype == torch.uint8 else rows.float()


def batch_images(x, idx: torch.Tensor, device) -> torch.Tensor:
    """Rows ``idx`` of a split (uint8 tensor, prepared shards, LazyImages, or [0, 1] floats) as
    float [0, 1] on ``device``."""
    return to_device_float(x[idx], device)
