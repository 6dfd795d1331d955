"""Perspective warps that give the same bits on every x86 CPU.

torchvision's ``perspective`` solves the homography with ``torch.linalg.lstsq`` (LAPACK) and maps
its sampling grid with ``bmm`` (BLAS). In the torch wheels both are MKL, which picks its kernels
by CPU vendor and model, so a warp, and a model trained on warped images, can differ in the last
bits between an Intel and an AMD machine with the same versions (docs/reproducing.md). Here the
eight coefficients come from Gaussian elimination in Python floats (IEEE doubles, a fixed order of
operations) and the grid from element-wise float64 arithmetic, each operation rounded once, so
both are bit-identical wherever they run; only ``grid_sample`` (ATen's own kernel) remains.

Semantics follow torchvision's: ``start`` and ``end`` are the four corners ``[top-left,
top-right, bottom-right, bottom-left]`` as ``[x, y]`` pixel coordinates; the content at ``start``
moves to ``end``; bilinear sampling at pixel centres; outside the image ``fill`` (one value or
one per channel), or 0 when ``fill`` is None.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

Corners = Sequence[Sequence[float]]


def homography(start: Corners, end: Corners) -> list[float]:
    """The 8 coefficients ``(a..h)`` mapping an output pixel ``(x, y)`` (a point of ``end``) to the
    input point ``((a x + b y + c) / (g x + h y + 1), (d x + e y + f) / (g x + h y + 1))`` (of
    ``start``), solved exactly from the four corner pairs in Python floats."""
    if len(start) != 4 or len(end) != 4:
        raise ValueError(f"a perspective warp needs 4 corners each, got {len(start)} and {len(end)}")
    rows = []
    for (ex, ey), (sx, sy) in zip(end, start):
        rows.append([ex, ey, 1.0, 0.0, 0.0, 0.0, -sx * ex, -sx * ey, sx])
        rows.append([0.0, 0.0, 0.0, ex, ey, 1.0, -sy * ex, -sy * ey, sy])
    return _solve([[float(v) for v in row] for row in rows])


def _solve(rows: list[list[float]]) -> list[float]:
    """Gaussian elimination with partial pivoting on an augmented ``n x (n + 1)`` system."""
    n = len(rows)
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(rows[r][col]))
        if rows[pivot][col] == 0.0:
            raise ValueError("degenerate perspective corners: three of them lie on one line")
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(col + 1, n):
            factor = rows[r][col] / rows[col][col]
            rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col])]
    solution = [0.0] * n
    for r in range(n - 1, -1, -1):
        solution[r] = (rows[r][n] - sum(rows[r][c] * solution[c] for c in range(r + 1, n))) / rows[r][r]
    return solution


def perspective_grid(coeffs: Sequence[float], height: int, width: int, dtype: torch.dtype,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """``grid_sample``'s ``(1, H, W, 2)`` grid (align_corners=False) for the homography ``coeffs``,
    computed in float64 element-wise operations and rounded to ``dtype`` once at the end."""
    a, b, c, d, e, f, g, h = (float(v) for v in coeffs)
    xs = (torch.arange(width, dtype=torch.float64, device=device) + 0.5).view(1, width)
    ys = (torch.arange(height, dtype=torch.float64, device=device) + 0.5).view(height, 1)
    den = (xs * g + ys * h) + 1.0
    src_x = ((xs * a + ys * b) + c) / den
    src_y = ((xs * d + ys * e) + f) / den
    grid = torch.stack([src_x / (0.5 * width) - 1.0, src_y / (0.5 * height) - 1.0], dim=-1)
    return grid.unsqueeze(0).to(dtype)


def perspective(img: torch.Tensor, start: Corners, end: Corners,
                fill: float | Sequence[float] | None = None) -> torch.Tensor:
    """``img`` (float ``(C, H, W)`` or ``(N, C, H, W)``) warped so that ``start`` moves to ``end``;
    the same shape and dtype back."""
    batch = img if img.dim() == 4 else img[None]
    n, channels, height, width = batch.shape
    grid = perspective_grid(homography(start, end), height, width, batch.dtype, batch.device).expand(n, -1, -1, -1)
    if fill is None:
        out = F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    else:  # a mask channel says how much of each output pixel came from inside the image
        mask = torch.ones((n, 1, height, width), dtype=batch.dtype, device=batch.device)
        both = F.grid_sample(torch.cat([batch, mask], dim=1), grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)
        out, inside = both[:, :channels], both[:, channels:]
        values = torch.as_tensor(fill if isinstance(fill, (list, tuple)) else [fill], dtype=batch.dtype,
                                 device=batch.device).view(1, -1, 1, 1)
        out = out * inside + (1.0 - inside) * values
    return out if img.dim() == 4 else out[0]
