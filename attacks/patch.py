"""Label-sized stickers (``--threat patch``): one square patch of a given share of the image area,
placed where it does the most harm, with any content in [0, 1]; nothing outside it changes.

* ``patch_pgd``: a location search, then gradient steps on the patch's pixels (Brown et al. 2017,
  arXiv:1712.09665), with expectation over small shelf transformations (perspective, scale,
  rotation, shift, brightness, contrast; Athalye et al. 2018, arXiv:1707.07397) so the patch does not depend on an
  exact pose. Locations: the ``locations`` windows of largest input-gradient mass (saliency),
  kept apart by half a side, each tried in turn on the examples still unfooled.
* ``patch_rs``: a gradient-free random search in the spirit of Sparse-RS (Croce et al. 2022,
  arXiv:2006.12834): it moves the patch to a random place or repaints a random square of it with a
  corner colour of the RGB cube, and keeps a change that raises the margin loss.

Verdicts are taken on the image with the patch pasted exactly (no transformation): that is the
threat model's set. Every random draw comes from the stream (seed, example index, restart), so
an example's result does not depend on its batch. Robust accuracy per patch size is the worst
case over both attacks (the evaluator's per-example worst case).

Args (defaults):
    patch_pgd: steps 100; step_size 1/16 (pixel units); locations 3; eot 4 (transformations per
        step; 1 turns it off); at "search" (or "ROW,COL": a fixed top-left corner); seed 0.
    patch_rs: queries 1000; move_every 5 (every n-th proposal moves the patch); at "search"; seed 0.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from advrp2k import Attack, AttackResult, Option, patch_side, register_attack, uniform_streams


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Best wrong logit minus the true logit (positive: fooled)."""
    logits = logits.float()
    true = logits.gather(1, y[:, None]).squeeze(1)
    return logits.scatter(1, y[:, None], float("-inf")).amax(1) - true


def _fixed_corner(at: str, h: int, w: int, side: int) -> tuple[int, int] | None:
    """``"ROW,COL"`` -> that top-left corner (clipped so the patch fits); ``"search"`` -> None."""
    if at == "search":
        return None
    row, col = (int(v) for v in at.split(","))
    return min(max(0, row), h - side), min(max(0, col), w - side)


def _check_at(at: str) -> str | None:
    if at == "search":
        return None
    parts = at.split(",")
    if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        return f"at={at!r} is neither 'search' nor 'ROW,COL' (the patch's top-left corner in pixels)"
    return None


def paste(x: torch.Tensor, content: torch.Tensor, corners: torch.Tensor, side: int) -> torch.Tensor:
    """``x`` with each example's ``content`` (N, 3, side, side) pasted at its top-left corner
    (N, 2), in one gather (differentiable in ``content``)."""
    n, _, h, w = x.shape
    corners = corners.to(x.device)
    rows = torch.arange(h, device=x.device)[None, :, None] - corners[:, 0, None, None]
    cols = torch.arange(w, device=x.device)[None, None, :] - corners[:, 1, None, None]
    inside = (rows >= 0) & (rows < side) & (cols >= 0) & (cols < side)  # (N, h, w)
    flat = (rows.clamp(0, side - 1) * side + cols.clamp(0, side - 1)).reshape(n, 1, h * w).expand(-1, 3, -1)
    gathered = content.reshape(n, 3, side * side).gather(2, flat).reshape(n, 3, h, w)
    return torch.where(inside[:, None], gathered, x)


def _square_mask(n: int, side: int, size: int, rows: torch.Tensor, cols: torch.Tensor, device) -> torch.Tensor:
    """(N, 1, side, side) bool: the ``size`` square at (rows, cols) inside each patch."""
    r = torch.arange(side, device=device)[None, :, None] - rows.to(device)[:, None, None]
    c = torch.arange(side, device=device)[None, None, :] - cols.to(device)[:, None, None]
    return ((r >= 0) & (r < size) & (c >= 0) & (c < size))[:, None]


class _PatchAttack(Attack):
    threats = ("patch",)

    def evaluation_problem(self) -> str | None:
        return _check_at(self.at)

    def config_facts(self) -> dict:
        return {"shape": "square", "placement": "fixed corner" if self.at != "search" else "searched"}

    def _side(self, x: torch.Tensor) -> int:
        return patch_side(self.eps.value, *x.shape[-2:])

    def _index(self, x) -> list[int]:
        return self.example_index or list(range(len(x)))


@register_attack("patch_pgd")
class PatchPGD(_PatchAttack):
    options = {
        "steps": Option(int, 100, min=1, max=10_000, help="gradient steps on the patch per location"),
        "step_size": Option(float, 1 / 16, min=0, max=1, help="signed step in pixel units"),
        "locations": Option(int, 3, min=1, max=100, help="locations tried, by saliency"),
        "eot": Option(int, 4, min=1, max=100, help="shelf transformations averaged per step (1: none)"),
        "at": Option(str, "search", help="'search' or 'ROW,COL', a fixed top-left corner"),
        "seed": Option(int, 0, min=0, max=2**63 - 1, help="seeds the attack's random draws"),
    }

    def perturb(self, model, x, y, init=None, generator=None) -> AttackResult:
        n, side, index = len(x), self._side(x), self._index(x)
        corners = self._corners(model, x, y, side)
        out, fooled = x.clone(), torch.zeros(n, dtype=torch.bool, device=x.device)
        forwards = backwards = 0
        for restart in range(corners.shape[1]):
            rows = (~fooled).nonzero().squeeze(1)
            if not len(rows):
                break
            f, b = self._at_location(model, x, y, rows, corners[rows.cpu(), restart], side, index, restart, out, fooled)
            forwards, backwards = forwards + f, backwards + b
        return AttackResult(out, fooled, forwards, backwards)

    def _at_location(self, model, x, y, rows, corners, side, index, restart, out, fooled):
        """Gradient steps on the patch at ``corners`` for the batch ``rows``; fooling points go to ``out``."""
        idx = [index[r] for r in rows.tolist()]
        content = uniform_streams((3, side, side), self.seed, idx, [restart] * len(idx), x.dtype).to(x.device)
        jitter = uniform_streams((self.steps, self.eot, JITTER_DRAWS), self.seed + 1, idx, [restart] * len(idx),
                                 torch.float64).to(x.device)
        active = torch.arange(len(rows), device=x.device)
        forwards = backwards = 0
        for step in range(self.steps + 1):
            xa = paste(x[rows[active]], content[active], corners[active.cpu()], side)
            with torch.no_grad():
                logits = model(xa)
            forwards += len(active)
            hit = self.reached(logits, y[rows[active]], None) if self.goal_rows is None else \
                self.reached(logits, y[rows[active]], rows[active])
            out[rows[active[hit]]], fooled[rows[active[hit]]] = xa[hit], True
            active = active[~hit]
            if step == self.steps or not len(active):
                break
            grad = self._grad(model, x[rows[active]], y[rows[active]], content[active], corners[active.cpu()],
                              side, jitter[active, step])
            backwards += self.eot * len(active)
            forwards += self.eot * len(active)
            content[active] = (content[active] + self.step_size * grad.sign()).clamp(0, 1)
        return forwards, backwards

    def _grad(self, model, x, y, content, corners, side, jitter) -> torch.Tensor:
        """The patch content's gradient of the margin loss, summed over ``eot`` transformations
        (the first, with ``eot`` 1, is the identity)."""
        content = content.clone().requires_grad_(True)
        total = torch.zeros((), device=x.device)
        with torch.enable_grad():
            for k in range(self.eot):
                xa = paste(x, content, corners, side)
                if self.eot > 1:
                    xa = _shelf_jitter(xa, jitter[:, k])
                total = total + _margin(model(xa), y).sum()
            grad, = torch.autograd.grad(total, content)
        return grad

    def _corners(self, model, x, y, side) -> torch.Tensor:
        """(N, locations, 2) top-left corners: the fixed one, or the windows of largest saliency."""
        h, w = x.shape[-2:]
        fixed = _fixed_corner(self.at, h, w, side)
        if fixed is not None:
            return torch.tensor([[fixed]] * len(x), dtype=torch.long)
        xg = x.clone().requires_grad_(True)
        with torch.enable_grad():
            grad, = torch.autograd.grad(_margin(model(xg), y).sum(), xg)
        mass = F.avg_pool2d(grad.abs().sum(1, keepdim=True), side, stride=1)[:, 0]  # (N, h-side+1, w-side+1)
        return torch.stack([_top_windows(m, self.locations, max(1, side // 2)) for m in mass.detach().cpu()])


#: Uniform draws per transformation: scale, rotation, shift x and y, contrast, brightness, tilt x and y.
JITTER_DRAWS = 8


def _shelf_jitter(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Small shelf transformations from uniform draws ``u`` (N, 8): scale 0.95-1.05, rotation
    +-5 degrees, shift +-3 %, a mild perspective (the camera tilted: a homography whose projective
    terms are +-0.08 in each axis), contrast 0.85-1.15, brightness +-0.05 (differentiable)."""
    u = u.to(x.dtype)
    scale, angle = 0.95 + 0.1 * u[:, 0], (u[:, 1] - 0.5) * (math.pi / 18)
    tx, ty = (u[:, 2] - 0.5) * 0.06, (u[:, 3] - 0.5) * 0.06
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    plain = F.affine_grid(torch.eye(2, 3, dtype=x.dtype, device=x.device).expand(len(x), -1, -1), list(x.shape),
                          align_corners=False)  # each output pixel's own coordinates in [-1, 1]
    tilt = (u[:, 6:8] - 0.5) * 0.16
    grid = grid / (1 + (plain * tilt[:, None, None, :]).sum(-1, keepdim=True))
    moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast, bright = 0.85 + 0.3 * u[:, 4], (u[:, 5] - 0.5) * 0.1
    return ((moved - 0.5) * contrast[:, None, None, None] + 0.5 + bright[:, None, None, None]).clamp(0, 1)


def _top_windows(mass: torch.Tensor, k: int, apart: int) -> torch.Tensor:
    """The ``k`` windows of largest ``mass`` whose corners lie at least ``apart`` pixels apart (Chebyshev)."""
    order = mass.flatten().argsort(descending=True).tolist()
    width, chosen = mass.shape[1], []
    for flat in order:
        r, c = divmod(flat, width)
        if all(max(abs(r - a), abs(c - b)) >= apart for a, b in chosen):
            chosen.append((r, c))
            if len(chosen) == k:
                break
    while len(chosen) < k:  # a tiny image has fewer distinct windows: repeat the best
        chosen.append(chosen[0])
    return torch.tensor(chosen, dtype=torch.long)


@register_attack("patch_rs")
class PatchRS(_PatchAttack):
    gradient_free = True
    options = {
        "queries": Option(int, 1000, min=1, max=1_000_000, help="proposals per example"),
        "move_every": Option(int, 5, min=1, max=1_000, help="every n-th proposal moves the patch"),
        "at": Option(str, "search", help="'search' or 'ROW,COL', a fixed top-left corner (never moved)"),
        "seed": Option(int, 0, min=0, max=2**63 - 1, help="seeds the attack's random draws"),
    }

    def perturb(self, model, x, y, init=None, generator=None) -> AttackResult:
        n, side, index = len(x), self._side(x), self._index(x)
        h, w = x.shape[-2:]
        draws = uniform_streams((self.queries + 1, 6), self.seed, index, [0] * n, torch.float64)
        init_colour = uniform_streams((3, side, side), self.seed + 1, index, [0] * n, x.dtype)
        content = (init_colour > 0.5).to(x.dtype).to(x.device)  # corners of the RGB cube, per pixel
        fixed = _fixed_corner(self.at, h, w, side)
        corners = torch.tensor([fixed] * n) if fixed else torch.stack(
            [(draws[:, 0, 0] * (h - side + 1)).long(), (draws[:, 0, 1] * (w - side + 1)).long()], 1)
        with torch.no_grad():
            best = _margin(model(paste(x, content, corners, side)), y)
        forwards, out = n, x.clone()
        fooled = best > 0
        out[fooled] = paste(x[fooled], content[fooled], corners[fooled.cpu()], side)
        for q in range(1, self.queries + 1):
            rows = (~fooled).nonzero().squeeze(1)
            if not len(rows):
                break
            new_content, new_corners = self._propose(content[rows], corners[rows.cpu()], draws[rows.cpu(), q], q,
                                                     side, h, w, fixed is not None)
            point = paste(x[rows], new_content, new_corners, side)
            with torch.no_grad():
                logits = model(point)
            forwards += len(rows)
            margin = _margin(logits, y[rows])
            better = margin > best[rows]
            keep = rows[better]
            content[keep], corners[keep.cpu()], best[keep] = new_content[better], new_corners[better.cpu()], margin[better]
            hit = self.reached(logits, y[rows], None)
            out[rows[hit]], fooled[rows[hit]] = point[hit], True
        return AttackResult(out, fooled, forwards, 0)

    def _propose(self, content, corners, u, q, side, h, w, fixed: bool):
        """A move (every ``move_every``-th proposal, unless the corner is fixed) or a repaint of a
        random square of the patch with one corner colour; its side shrinks as queries pass."""
        content, corners = content.clone(), corners.clone()
        if not fixed and q % self.move_every == 0:
            corners[:, 0] = (u[:, 0] * (h - side + 1)).long().clamp(max=h - side)
            corners[:, 1] = (u[:, 1] * (w - side + 1)).long().clamp(max=w - side)
            return content, corners
        size = max(1, round(side * 0.5 * (1 - q / (self.queries + 1)) ** 0.5))
        rows = (u[:, 2] * (side - size + 1)).long()
        cols = (u[:, 3] * (side - size + 1)).long()
        code = (u[:, 4] * 8).long().clamp(max=7)
        colour = torch.stack([(code >> bit) & 1 for bit in range(3)], 1).to(content.dtype).to(content.device)
        mask = _square_mask(len(content), side, size, rows, cols, content.device)
        content = torch.where(mask, colour[:, :, None, None], content)
        return content, corners
