"""The RP2K paper's training augmentation (Sec. 4.2), applied to batches on the device.

``--augment paper``: a constant border of 0 to 30 px, a random crop of up to 10 px, a random
perspective transform, and brightening or darkening by up to 20 %. Pixel amounts are the
paper's at 224 px, scaled to the training image size. Every draw comes from the trainer's
``augment`` generator (checkpointed with the rest), so a resumed run augments identically. The perspective warp is advrp2k.core.warp's, which calls
no BLAS or LAPACK routine, so a one-thread training gives the same checkpoint on any x86 CPU with
the same versions (docs/reproducing.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from advrp2k.core import warp

AUGMENTS = ("none", "paper")
PAPER_SIZE = 224
BORDER_PX, CROP_PX, PERSPECTIVE, BRIGHTNESS = 30, 10, 0.2, 0.2


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """``x`` (float ``(N, 3, S, S)`` in [0, 1]) augmented as ``kind`` says; "none" returns it unchanged."""
    if kind == "none":
        return x
    return torch.stack([_paper_one(img, generator) for img in x])


def _u(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _paper_one(img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    size = img.shape[-1]
    scale = size / PAPER_SIZE
    border = int(round(_u(g, 0, BORDER_PX) * scale))
    if border:  # a constant border (a random grey level) around the product, then back to size
        img = F.pad(img, (border,) * 4, value=_u(g, 0, 1))
        img = F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    crop = int(round(_u(g, 0, CROP_PX) * scale))
    if crop:  # crop up to `crop` px off the sides, then back to size
        top, left = int(_u(g, 0, crop + 1)), int(_u(g, 0, crop + 1))
        img = img[:, top:size - crop + top, left:size - crop + left]
        img = F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    corners = [[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]]
    jitter = PERSPECTIVE * size / 2
    moved = [[min(max(int(round(c + _u(g, -jitter, jitter))), 0), size - 1) for c in corner] for corner in corners]
    img = warp.perspective(img, corners, moved)  # BLAS-free: the same bits on Intel and AMD
    return (img * _u(g, 1 - BRIGHTNESS, 1 + BRIGHTNESS)).clamp(0, 1)
