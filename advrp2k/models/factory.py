"""Building a model by name: a registered architecture, a RobustBench skeleton, or a pretrained start."""
from __future__ import annotations

import torch
from torch import nn

from advrp2k.core.errors import UsageError
from advrp2k.models.backbones import (RB_PREFIX, _weights_file, robustbench_pretrained, robustbench_skeleton,
                                      torchvision_imagenet)
from advrp2k.models.timm_archs import TIMM_PREFIX, check_timm_name, timm_library, timm_model
from advrp2k.plugins.registry import ARCHS


def create_model(arch: str, num_classes: int, **kwargs) -> nn.Module:
    """Build an architecture by name: registered, ``rb:<RobustBench name>`` or ``timm:<name>``.

    Args:
        arch: a name from ``list_archs()``, ``rb:<name>`` or ``timm:<name>``.
        num_classes: output width.
    """
    if arch.startswith("rb:"):  # a RobustBench architecture (weights come from the checkpoint)
        return robustbench_skeleton(arch[3:], num_classes)
    if arch.startswith(TIMM_PREFIX):  # any timm architecture, freshly initialised
        return timm_model(arch[len(TIMM_PREFIX):], num_classes)
    return ARCHS.get(arch)(num_classes=num_classes, **kwargs)


def check_arch(arch: str) -> None:
    """Refuse an unknown architecture before any data work (a RobustBench name is checked with
    its weights). ``timm:<name>`` needs timm installed and a model of that name."""
    if arch.startswith(TIMM_PREFIX):
        check_timm_name(arch[len(TIMM_PREFIX):])
    elif not arch.startswith("rb:"):
        ARCHS.info(arch)


def arch_library(arch: str) -> dict | None:
    """The library that builds ``arch`` and its version, when it is not advrp2k itself (its
    version is in every record already): timm for ``timm:`` archs."""
    return timm_library() if arch.startswith(TIMM_PREFIX) else None


def list_archs(pattern: str = "*") -> list[str]:
    return ARCHS.names(pattern)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA device is available; use --device auto or cpu")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


def initial_model(arch: str, pretrained: str | None, num_classes: int, model_dir) -> tuple[nn.Module, dict | None]:
    """The model training starts from: a RobustBench backbone (``rb:<Name>``), torchvision's ImageNet
    weights (``pretrained="imagenet"``), or a fresh initialisation (backbone record None)."""
    found = _weights_file(arch, pretrained, model_dir)
    if found is None:
        return create_model(arch, num_classes), None
    path, name, source = found
    load = robustbench_pretrained if arch.startswith(RB_PREFIX) else torchvision_imagenet
    model, sha = load(arch[len(RB_PREFIX):] if arch.startswith(RB_PREFIX) else arch, num_classes, path)
    return model, {"name": name, "source": source, "file": str(path), "sha256": sha}
