"""A 2 x 2 max-pool, stride 2, that gives ``nn.MaxPool2d(2)``'s values and gradients bit for bit
and runs its forward two to three times faster on the CPU.

Why: ATen's CPU max-pool for contiguous (NCHW) tensors is a scalar loop per output; on the quick
start's 32-pixel images its forward cost more than a ReLU twenty times over and was the largest
cost after the convolutions (``benchmarks/quickstart_phases.py --floor``). Its backward, given
the indices, is fast.

How: the forward finds the very indices ATen's pool would return, in vectorised passes (each
row's pair of columns, then the pair of rows), gathers the values at them, and leaves the
backward to ATen's own ``max_pool2d_with_indices_backward``. So the values and gradients are
ATen's by construction: ATen scans a window in row-major order and moves on only to a strictly
greater element, so the first maximum wins; both passes keep the first of a tied pair. Tested
in tests/test_fast_pool.py, ties and signed zeros included.

Not served here, and sent to ATen's own pool: a tensor not on the CPU, not 4-D and contiguous,
or with an odd height or width. A NaN in a window gives NaN either way, but its gradient may go
to another element than ATen's (ATen lets the last NaN win).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_OFFSETS: dict[tuple[int, int], torch.Tensor] = {}  # (height, width) -> each window's top-left index


def _top_left(h: int, w: int) -> torch.Tensor:
    """The flat index (row * width + column) of each 2 x 2 window's top-left element, int32."""
    if (h, w) not in _OFFSETS:
        rows = torch.arange(h // 2, dtype=torch.int32).view(-1, 1) * (2 * w)
        _OFFSETS[(h, w)] = rows + torch.arange(w // 2, dtype=torch.int32).view(1, -1) * 2
    return _OFFSETS[(h, w)]


def window_argmax(x: torch.Tensor) -> torch.Tensor:
    """The indices ``F.max_pool2d(x, 2, return_indices=True)`` returns, shape (N, C, H/2, W/2)."""
    n, c, h, w = x.shape
    pairs = x.view(n, c, h, w // 2, 2)
    right = (pairs[..., 1] > pairs[..., 0]).view(n, c, h // 2, 2, w // 2)  # a tie keeps the left
    rows = torch.maximum(pairs[..., 1], pairs[..., 0]).view(n, c, h // 2, 2, w // 2)
    bottom = rows[:, :, :, 1] > rows[:, :, :, 0]  # a tie keeps the top row (signed zeros tie too)
    right = right.to(torch.uint8)
    top_right, bottom_right = right[:, :, :, 0], right[:, :, :, 1]
    column = top_right ^ ((top_right ^ bottom_right) & bottom.to(torch.uint8))  # the winning row's
    return (_top_left(h, w) + bottom.to(torch.int32) * w + column).long()


class _MaxPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        idx = window_argmax(x)
        ctx.save_for_backward(x, idx)
        n, c = idx.shape[:2]
        return x.view(n, c, -1).gather(2, idx.view(n, c, -1)).view(idx.shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, idx = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, [2, 2], [2, 2], [0, 0], [1, 1], False, idx)


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)``, bit for bit; computed here where the input is served (see above)."""
    if x.device.type != "cpu" or x.dim() != 4 or x.shape[2] % 2 or x.shape[3] % 2 or not x.is_contiguous():
        return F.max_pool2d(x, 2)
    return _MaxPool2x2.apply(x)


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)`` computed by ``max_pool_2x2`` (no parameters: checkpoints are unaffected)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_2x2(x)
