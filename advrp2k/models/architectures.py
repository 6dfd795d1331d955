"""Architectures: every model maps [0, 1] images to logits and normalises inside itself."""
from __future__ import annotations

import torch
from torch import nn

from advrp2k.models.fast_batchnorm import BatchNorm2d
from advrp2k.models.fast_pool import MaxPool2x2
from advrp2k.plugins.registry import register_arch

#: ImageNet statistics; the models are trained from scratch, so any fixed values would do,
#: but the layer must live inside the model so attacks always see [0, 1] pixels.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """Per-channel standardisation as the model's first layer (as RobustBench models do)."""

    def __init__(self, mean=MEAN, std=STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), BatchNorm2d(cout), nn.ReLU(inplace=True))


@register_arch("smallcnn")
def smallcnn(num_classes: int, width: int = 16) -> nn.Module:
    """A five-layer CNN with BatchNorm for the CPU default (about 0.1 M parameters at width 16).

    Its pools are ``MaxPool2x2`` and its BatchNorms ``fast_batchnorm.BatchNorm2d``: ATen's results
    bit for bit (values and gradients), faster on the CPU."""
    w = width
    body = nn.Sequential(
        _conv_bn(3, w), _conv_bn(w, 2 * w), MaxPool2x2(),
        _conv_bn(2 * w, 2 * w), _conv_bn(2 * w, 4 * w), MaxPool2x2(),
        _conv_bn(4 * w, 8 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8 * w, num_classes),
    )
    return nn.Sequential(Normalize(), body)


def with_aten_layers(model: nn.Module, pools: bool = True, batchnorms: bool = True) -> nn.Module:
    """``model``, changed in place, with ATen's ``nn.MaxPool2d(2)`` and ``nn.BatchNorm2d`` (same
    state) where smallcnn has ``MaxPool2x2`` and ``fast_batchnorm.BatchNorm2d``: the reference those
    layers are tested (tests/test_fast_*.py) and timed (benchmarks/layer_speed.py) against."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if pools and isinstance(child, MaxPool2x2):
                setattr(parent, name, nn.MaxPool2d(2))
            elif batchnorms and type(child) is BatchNorm2d:
                native = nn.BatchNorm2d(child.num_features, child.eps, child.momentum)
                native.load_state_dict(child.state_dict())
                setattr(parent, name, native)
    return model


@register_arch("resnet18")
def resnet18(num_classes: int) -> nn.Module:
    """torchvision's ResNet-18, trained from scratch."""
    import torchvision  # seconds to import: only when a ResNet is built

    return nn.Sequential(Normalize(), torchvision.models.resnet18(weights=None, num_classes=num_classes))


@register_arch("resnet34")
def resnet34(num_classes: int) -> nn.Module:
    """torchvision's ResNet-34, the paper's network (Sec. 4.1), trained from scratch."""
    import torchvision

    return nn.Sequential(Normalize(), torchvision.models.resnet34(weights=None, num_classes=num_classes))


@register_arch("resnet50")
def resnet50(num_classes: int) -> nn.Module:
    """torchvision's ResNet-50 (the widest ``--pretrained imagenet`` starts from), trained from scratch."""
    import torchvision

    return nn.Sequential(Normalize(), torchvision.models.resnet50(weights=None, num_classes=num_classes))
