"""A 2-D BatchNorm whose eval-mode input gradient is ``nn.BatchNorm2d``'s bit for bit and faster
on the CPU: what every attack step pays for at each of smallcnn's five BatchNorms
(``benchmarks/layer_speed.py`` times smallcnn's layers against ATen's).

Why: in eval mode ATen's CPU backward computes, for every channel, the sum of the incoming
gradient and its dot product with the centred input (what the weight and bias gradients need)
before it writes the input gradient, even when no weight gradient is asked for. An attack
freezes the weights, so those two passes over the activations are wasted; they made the
BatchNorm backward the largest cost of an attack step after the convolutions (15 % of a step
on a batch of 128, by the torch profiler; docs/results/quickstart.md).

How: the forward is ATen's own ``batch_norm`` (one pass, unchanged). The backward writes only
the input gradient, with ATen's arithmetic: ``invstd = 1 / sqrt(running_var + eps)`` in double,
rounded once to float, then ``(grad * invstd) * weight``, each product rounded in float, as
ATen's eval-mode loop does. So values and gradients are ATen's by construction, signed zeros
included (tests/test_fast_batchnorm.py).

Served: eval mode, running statistics, an affine layer whose weight and bias need no gradient,
a float32 CPU input of four dimensions. Everything else (training, a weight gradient, another
dtype or device) is ATen's BatchNorm, untouched.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _EvalBatchNormInputGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, running_mean, running_var, weight, bias, eps: float):
        ctx.save_for_backward(running_var, weight)
        ctx.eps = eps
        return F.batch_norm(x, running_mean, running_var, weight, bias, False, 0.0, eps)

    @staticmethod
    def backward(ctx, grad):
        running_var, weight = ctx.saved_tensors
        shape = (1, -1, 1, 1)
        invstd = (1 / torch.sqrt(running_var.double() + ctx.eps)).float().view(shape)
        return (grad * invstd).mul_(weight.view(shape)), None, None, None, None, None


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, buffers and state-dict keys) with the fast eval-mode
    input gradient above where it is served."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._serves(x):
            return super().forward(x)
        return _EvalBatchNormInputGrad.apply(x, self.running_mean, self.running_var, self.weight, self.bias, self.eps)

    def _serves(self, x: torch.Tensor) -> bool:
        return (not self.training and self.running_var is not None and self.affine and x.requires_grad
                and torch.is_grad_enabled() and not self.weight.requires_grad and not self.bias.requires_grad
                and x.dim() == 4 and x.dtype == torch.float32 and x.device.type == "cpu")
