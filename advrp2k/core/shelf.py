"""Shelf conditions: the transforms of the ``shelf`` threat model, defined once and imported by the
corruption evaluation (``advrp2k.eval.corruption``), the worst-of-grid attack (``attacks/shelf.py``)
and the engine, which re-generates every point that attack returns.

Two families, each at severities 1 to 5:

* ``CORRUPTIONS``: what a shelf camera meets (Hendrycks and Dietterich 2019, "Benchmarking neural
  network robustness to common corruptions", arXiv:1903.12261, for the protocol; the retail
  corruptions are this module's): glare, a price tag, a hand, motion and defocus blur, a colour
  cast, low light with noise, JPEG, a steep perspective, a low-resolution crop.
* ``GRID``: a bounded grid of photometric and geometric changes (brightness, contrast, hue,
  rotation; in the spirit of Engstrom et al. 2019, "Exploring the landscape of spatial
  robustness", arXiv:1712.02779), searched per image for the worst case.

Every random draw comes from the stream (corruption, example index, severity) of
``advrp2k.core.random_streams``, and every example is transformed on its own, so an output does not
depend on the batch, its size or the run. Outputs are rounded to 8-bit levels (what a camera
delivers), which also absorbs last-bit differences between floating-point kernels.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from advrp2k.core import warp
from advrp2k.core.random_streams import uniform

SEVERITIES = (1, 2, 3, 4, 5)
#: Seeds the corruption streams: fixed, so corruptions are identical everywhere.
SHELF_SEED = 20_19_03_12


def _stream(key: int, index: list[int], severity: int, n: int) -> torch.Tensor:
    """(len(index), n) uniform draws from the streams (SHELF_SEED + key, example, severity)."""
    return uniform((n,), SHELF_SEED + key, index, [severity] * len(index), torch.float64)


def _grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in [0, 1]: (rows, cols), each (h, w)."""
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    return torch.meshgrid(ys, xs, indexing="ij")


def glare(x: torch.Tensor, index: list[int], s: int) -> torch.Tensor:
    """A specular highlight on plastic or glass: a bright Gaussian spot, screen-blended."""
    u = _stream(1, index, s, 2)
    amp, sigma = (0.35, 0.5, 0.65, 0.8, 0.95)[s - 1], (0.08, 0.1, 0.12, 0.14, 0.16)[s - 1]
    rows, cols = _grid(*x.shape[-2:])
    out = []
    for k in range(len(x)):
        cy, cx = 0.15 + 0.7 * u[k, 0], 0.15 + 0.7 * u[k, 1]
        spot = (amp * torch.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * sigma ** 2))).to(x.dtype)
        out.append(1 - (1 - x[k]) * (1 - spot))
    return torch.stack(out)


def price_tag(x: torch.Tensor, index: list[int], s: int) -> torch.Tensor:
    """A shelf-edge price label over the lower part of the product: a pale rectangle (2:1) with a
    dark price bar."""
    u = _stream(2, index, s, 2)
    h, w = x.shape[-2:]
    area = (0.02, 0.04, 0.06, 0.09, 0.12)[s - 1] * h * w
    th, tw = max(1, round(math.sqrt(area / 2))), max(1, min(w, round(2 * math.sqrt(area / 2))))
    label = torch.tensor([1.0, 0.97, 0.75], dtype=x.dtype)[:, None, None]
    out = x.clone()
    for k in range(len(x)):
        top = h - th - int(u[k, 0] * max(0, h // 2 - th))
        left = int(u[k, 1] * (w - tw + 1))
        out[k, :, top:top + th, left:left + tw] = label
        bar = max(1, th // 4)
        mid = top + (th - bar) // 2
        out[k, :, mid:mid + bar, left + tw // 5:left + tw - tw // 5] = 0.1
    return out


def hand(x: torch.Tensor, index: list[int], s: int) -> torch.Tensor:
    """A hand reaching in from the left or right edge: a skin-coloured ellipse, shaded."""
    u = _stream(3, index, s, 2)
    h, w = x.shape[-2:]
    area = (0.04, 0.08, 0.12, 0.16, 0.2)[s - 1]
    rows, cols = _grid(h, w)
    semi_x = math.sqrt(area / math.pi * 1.6)
    semi_y = area / (math.pi * semi_x)
    skin = torch.tensor([0.86, 0.66, 0.54], dtype=x.dtype)[:, None, None]
    out = x.clone()
    for k in range(len(x)):
        cx = 0.0 if u[k, 0] < 0.5 else 1.0
        cy = 0.2 + 0.6 * u[k, 1]
        inside = ((cols - cx) / semi_x) ** 2 + ((rows - cy) / semi_y) ** 2 <= 1
        shade = (0.85 + 0.15 * (1 - (rows - cy).abs() / semi_y).clamp(0, 1)).to(x.dtype)
        out[k] = torch.where(inside, skin * shade, x[k])
    return out


def _convolve(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """One image (3, H, W) convolved with a normalised 2-D kernel, edges reflected."""
    kh, kw = kernel.shape
    padded = F.pad(image[None], (kw // 2, kw - 1 - kw // 2, kh // 2, kh - 1 - kh // 2), mode="replicate")
    weight = (kernel / kernel.sum()).to(image.dtype)[None, None].repeat(3, 1, 1, 1)
    return F.conv2d(padded, weight, groups=3)[0]


def motion_blur(x: torch.Tensor, index: list[int], s: int) -> torch.Tensor:
    """Camera or trolley motion: a line kernel at a random angle."""
    u = _stream(4, index, s, 1)
    scale = max(1.0, x.shape[-1] / 32)
    length = int(round((3, 5, 7, 9, 11)[s - 1] * scale)) | 1
    out = []
    for k in range(len(x)):
        theta = float(u[k, 0]) * math.pi
        kernel = torch.zeros(length, length, dtype=torch.float64)
        c = length // 2
        for t in torch.linspace(-c, c, 4 * length).tolist():
            kernel[round(c + t * math.sin(theta)), round(c + t * math.cos(theta))] += 1
        out.append(_convolve(x[k], kernel))
    return torch.stack(out)


def defocus_blur(x: torch.Tensor, index: list[int], s: int) -> torch.Tensor:
    """An out-of-focus shelf camera: a disk kernel."""
    radius = (0.6, 1.0, 1.5, 2.0, 2.6)[s - 1] * max(1.0, x.shape[-1] / 32)
    size = 2 * int(math.ceil(radius)) + 1
    r = torch.arange(size, dtype=torch.float64) - size // 2
    kernel = ((r[:, None] ** 2 + r[None] ** 2) <= radius ** 2 + 0.25).double()
    return torch.stack([_convolve(img, kernel) for img in x])


def colour_cast(x: torch.Tensor, index: list[int], s: int) -> torch.Tensor:
    """Store lighting of another colour temperature: a random gain per channel."""
    u = _stream(6, index, s, 3)
    strength = (0.08, 0.16, 0.24, 0.32, 0.4)[s - 1]
    gains = (1 + strength * (2 * u - 1)).to(x.dtype)
    return x * gains[:, :, None, None]


def low_light(x: torch.Tensor, index: list[int], s: int) -> torch.Tensor:
    """A dim aisle: the image darkened, with sensor noise."""
    gain, sigma = (0.6, 0.45, 0.33, 0.24, 0.16)[s - 1], (0.01, 0.02, 0.03, 0.045, 0.06)[s - 1]
    noise = uniform(tuple(x.shape[1:]), SHELF_SEED + 7, index, [s] * len(index), torch.float64)
    gauss = torch.erfinv((2 * noise - 1).clamp(-1 + 1e-12, 1 - 1e-12)) * math.sqrt(2)
    return x * gain + (sigma * gauss).to(x.dtype)


def jpeg(x: torch.Tensor, index: list[int], s: int) -> torch.Tensor:
    """A heavily compressed upload: JPEG at low quality (Pillow's libjpeg, 4:2:0 subsampling)."""
    import io

    import numpy as np
    from PIL import Image

    quality = (40, 25, 15, 10, 6)[s - 1]
    out = []
    for img in x:
        pixels = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality, subsampling=2)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        out.append(torch.from_numpy(decoded.copy()).permute(2, 0, 1).to(x.dtype) / 255)
    return torch.stack(out).to(x.device)


def perspective(x: torch.Tensor, index: list[int], s: int) -> torch.Tensor:
    """A steep camera angle: each corner pulled inward by a random share of up to 4-20 % of the side."""
    u = _stream(8, index, s, 8)
    h, w = x.shape[-2:]
    d = (0.04, 0.08, 0.12, 0.16, 0.2)[s - 1]
    start = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
    signs = [(1, 1), (-1, 1), (-1, -1), (1, -1)]
    out = []
    for k in range(len(x)):
        end = [[round(px + sx * d * w * float(u[k, 2 * c])), round(py + sy * d * h * float(u[k, 2 * c + 1]))]
               for c, ((px, py), (sx, sy)) in enumerate(zip(start, signs))]
        out.append(warp.perspective(x[k], start, end, fill=[0.5, 0.5, 0.5]))  # BLAS-free: same bits on any CPU
    return torch.stack(out)


def low_resolution(x: torch.Tensor, index: list[int], s: int) -> torch.Tensor:
    """A product far from the camera: the crop taken at a lower resolution and scaled back up."""
    factor = (1.5, 2.0, 3.0, 4.0, 6.0)[s - 1]
    h, w = x.shape[-2:]
    small = (max(2, round(h / factor)), max(2, round(w / factor)))
    out = []
    for img in x:
        down = F.interpolate(img[None], size=small, mode="area")
        out.append(F.interpolate(down, size=(h, w), mode="bilinear", align_corners=False)[0])
    return torch.stack(out)


#: name -> transform(x, example indices, severity); the order is the worst-of-grid attack's.
CORRUPTIONS: dict[str, Callable] = {
    "glare": glare, "price_tag": price_tag, "hand": hand, "motion_blur": motion_blur,
    "defocus_blur": defocus_blur, "colour_cast": colour_cast, "low_light": low_light, "jpeg": jpeg,
    "perspective": perspective, "low_resolution": low_resolution,
}

#: The grid's steps per factor at severity s: brightness +-0.05 s, contrast x(1 +- 0.08 s),
#: hue +-0.015 s turns, rotation +-3 s degrees; every combination but the identity (80).
GRID = tuple((b, c, hu, r) for b in (-1, 0, 1) for c in (-1, 0, 1) for hu in (-1, 0, 1) for r in (-1, 0, 1)
             if (b, c, hu, r) != (0, 0, 0, 0))


def grid_point(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """The grid's ``k``-th combination at severity ``s`` applied to every image of ``x``."""
    from torchvision.transforms.functional import InterpolationMode, adjust_hue, rotate

    b, c, hu, r = GRID[k]
    out = []
    for img in x:
        y = img + 0.05 * s * b
        y = (y - 0.5) * (1 + 0.08 * s * c) + 0.5
        y = y.clamp(0, 1)
        if hu:
            y = adjust_hue(y, 0.015 * s * hu)
        if r:
            y = rotate(y, 3.0 * s * r, interpolation=InterpolationMode.BILINEAR, fill=[0.5, 0.5, 0.5])
        out.append(y)
    return torch.stack(out)


def candidates() -> list[str]:
    """The worst-of-grid attack's candidates in order: every corruption, then every grid point."""
    return list(CORRUPTIONS) + [f"grid{k}" for k in range(len(GRID))]


def apply(x: torch.Tensor, index: list[int], severity: int, candidate: int) -> torch.Tensor:
    """Candidate number ``candidate`` (``candidates()``) at ``severity`` on the batch, rounded to
    8-bit levels; -1 is the image itself."""
    if candidate < 0:
        return x.clone()
    names = list(CORRUPTIONS)
    out = CORRUPTIONS[names[candidate]](x, index, severity) if candidate < len(names) \
        else grid_point(x, candidate - len(names), severity)
    return quantise(out)


def corrupt(x: torch.Tensor, index: list[int], name: str, severity: int) -> torch.Tensor:
    """Corruption ``name`` at ``severity`` on the batch (global example ``index``), 8-bit levels."""
    return apply(x, index, severity, list(CORRUPTIONS).index(name))


def quantise(x: torch.Tensor) -> torch.Tensor:
    """Clamped to [0, 1] and rounded to the 256 levels of an 8-bit image."""
    return (x.clamp(0, 1) * 255).round() / 255


def regenerate(x: torch.Tensor, index: list[int], severity: int, choices: list[int]) -> torch.Tensor:
    """Each example's chosen candidate, re-generated (the engine's check of the attack's points)."""
    out = x.clone()
    for choice in sorted(set(choices)):
        rows = [k for k, c in enumerate(choices) if c == choice]
        out[rows] = apply(x[rows], [index[k] for k in rows], severity, choice)
    return out


#: The names plugins import from the public API (``advrp2k.shelf_apply``, ``advrp2k.shelf_candidates``).
shelf_apply, shelf_candidates = apply, candidates
